package main

import (
	"flag"
	"io"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/hookline/hookline/controllers"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, c config)
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, c config) {
			if c.subscriptionWorkers != controllers.DefaultSubscriptionWorkers {
				t.Errorf("subscription workers = %d, want %d", c.subscriptionWorkers, controllers.DefaultSubscriptionWorkers)
			}
			if c.kubeQPS != 0 || c.kubeBurst != 0 {
				t.Errorf("client limit = %v/%d, want none (0/0)", c.kubeQPS, c.kubeBurst)
			}
			if c.operatorNamespace != "hookline-system" || c.leaderElectionNS != "hookline-system" {
				t.Errorf("namespaces = %q, %q, want hookline-system for both", c.operatorNamespace, c.leaderElectionNS)
			}
			if c.webhookPort != 9443 || c.webhookCertDir != "" || c.webhookCertSecret != "hookline-webhook-tls" || c.webhookService != "hookline-webhook" || c.webhookConfig != "hookline-validating-webhook" {
				t.Errorf("webhook settings = %d %q %q %q %q, want the defaults config/webhook and the chart use", c.webhookPort, c.webhookCertDir, c.webhookCertSecret, c.webhookService, c.webhookConfig)
			}
		}},
		{name: "workers and limits", args: []string{"--subscription-workers=32", "--kube-api-qps=200", "--kube-api-burst=300"}, check: func(t *testing.T, c config) {
			if c.subscriptionWorkers != 32 || c.kubeQPS != 200 || c.kubeBurst != 300 {
				t.Errorf("got workers %d, qps %v, burst %d, want 32, 200, 300", c.subscriptionWorkers, c.kubeQPS, c.kubeBurst)
			}
		}},
		{name: "one worker", args: []string{"--subscription-workers=1"}, check: func(t *testing.T, c config) {
			if c.subscriptionWorkers != 1 {
				t.Errorf("subscription workers = %d, want 1", c.subscriptionWorkers)
			}
		}},
		{name: "zero workers", args: []string{"--subscription-workers=0"}, wantErr: "--subscription-workers must be at least 1, got 0"},
		{name: "negative workers", args: []string{"--subscription-workers=-3"}, wantErr: "--subscription-workers must be at least 1, got -3"},
		{name: "negative qps", args: []string{"--kube-api-qps=-1"}, wantErr: "--kube-api-qps must be a positive number, or 0 for no limit in the manager, got -1"},
		{name: "qps not a number", args: []string{"--kube-api-qps=NaN"}, wantErr: "--kube-api-qps must be a positive number, or 0 for no limit in the manager, got NaN"},
		{name: "infinite qps", args: []string{"--kube-api-qps=+Inf"}, wantErr: "--kube-api-qps must be a positive number, or 0 for no limit in the manager, got +Inf"},
		{name: "negative burst", args: []string{"--kube-api-qps=50", "--kube-api-burst=-1"}, wantErr: "--kube-api-burst must be positive, or 0 for twice --kube-api-qps, got -1"},
		{name: "burst without qps", args: []string{"--kube-api-burst=100"}, wantErr: "--kube-api-burst needs --kube-api-qps: without it the manager sets no limit"},
		{name: "webhook off", args: []string{"--webhook-port=0"}, check: func(t *testing.T, c config) {
			if c.webhookPort != 0 {
				t.Errorf("webhook port = %d, want 0", c.webhookPort)
			}
		}},
		{name: "webhook port out of range", args: []string{"--webhook-port=70000"}, wantErr: "--webhook-port must be from 1 to 65535, or 0 to turn the webhook off, got 70000"},
		{name: "leader election namespace", args: []string{"--operator-namespace=ops", "--leader-election-namespace=elect"}, check: func(t *testing.T, c config) {
			if c.operatorNamespace != "ops" || c.leaderElectionNS != "elect" {
				t.Errorf("namespaces = %q, %q, want ops, elect", c.operatorNamespace, c.leaderElectionNS)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", "")
			fs := flag.NewFlagSet("manager", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c, err := parseFlags(fs, tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsing %q: %v", tt.args, err)
			}
			tt.check(t, c)
		})
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name      string
		qps       float64
		burst     int
		wantQPS   float32
		wantBurst int
	}{
		// controller-runtime's configuration comes with QPS -1: no limit.
		{"no limit keeps the configuration's", 0, 0, -1, 0},
		{"qps and burst", 50, 100, 50, 100},
		{"burst defaults to twice qps", 50, 0, 50, 100},
		{"burst rounds up", 0.4, 0, 0.4, 1},
		{"a burst below qps is kept", 100, 10, 100, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &rest.Config{QPS: -1}
			config{kubeQPS: tt.qps, kubeBurst: tt.burst}.rateLimit(cfg)
			if cfg.QPS != tt.wantQPS || cfg.Burst != tt.wantBurst {
				t.Errorf("QPS/burst = %v/%d, want %v/%d", cfg.QPS, cfg.Burst, tt.wantQPS, tt.wantBurst)
			}
		})
	}
}
