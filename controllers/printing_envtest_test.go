package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestKubectlDiscoveryAndColumns checks what kubectl shows: every kind is in
// the "hookline" category (kubectl get hookline) with its short names, and
// the server-side table kubectl prints has the promised columns.
func TestKubectlDiscoveryAndColumns(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	resources, err := dc.ServerResourcesForGroupVersion(hooklinev1.GroupVersion.String())
	if err != nil {
		t.Fatalf("discovering %s: %v", hooklinev1.GroupVersion, err)
	}
	wantShort := map[string][]string{
		"webhookdispatchers":   {"whd", "whdispatcher"},
		"webhooksecrets":       {"whsec", "whsecret"},
		"webhooksubscriptions": {"whsub", "whsubscription"},
	}
	seen := 0
	for _, r := range resources.APIResources {
		want, ok := wantShort[r.Name]
		if !ok {
			continue
		}
		seen++
		if !slices.Contains(r.Categories, "hookline") {
			t.Errorf("%s categories = %v, want hookline", r.Name, r.Categories)
		}
		if !slices.Equal(r.ShortNames, want) {
			t.Errorf("%s short names = %v, want %v", r.Name, r.ShortNames, want)
		}
	}
	if seen != len(wantShort) {
		t.Fatalf("discovery lists %d of the %d Hookline resources", seen, len(wantShort))
	}

	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	wantColumns := map[string][]string{
		"webhookdispatchers":   {"Name", "Address", "Replicas", "Ready Replicas", "Ready", "Reason", "Status", "Age"},
		"webhooksecrets":       {"Name", "Algorithm", "Key", "Next Rotation", "Ready", "Reason", "Status", "Age"},
		"webhooksubscriptions": {"Name", "URL", "Event Types", "Ready", "Reason", "Healthy", "Status", "Dispatcher", "Age"},
	}
	for resource, want := range wantColumns {
		raw, err := cs.RESTClient().Get().AbsPath("/apis", hooklinev1.GroupVersion.Group, hooklinev1.GroupVersion.Version, resource).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(suiteCtx)
		if err != nil {
			t.Fatalf("listing %s as a table: %v", resource, err)
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil {
			t.Fatalf("decoding the %s table: %v", resource, err)
		}
		var got []string
		for _, c := range table.ColumnDefinitions {
			got = append(got, c.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s columns = %v, want %v", resource, got, want)
		}
	}
}

// TestEventTypesColumn checks the EVENT TYPES column kubectl get whsub
// prints: the patterns as written, not a JSON list with escaped characters
// (["order.\u003e"]).
func TestEventTypesColumn(t *testing.T) {
	ns := newNamespace(t)
	whsubSubscription(t, ns, "patterns", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.EventTypes = []string{"order.>", "invoice.*.paid"}
	})
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, whsubTimeout, func() (bool, string) {
		raw, err := cs.RESTClient().Get().AbsPath("/apis", hooklinev1.GroupVersion.Group, hooklinev1.GroupVersion.Version, "namespaces", ns, "webhooksubscriptions").
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(suiteCtx)
		if err != nil {
			return false, err.Error()
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil {
			return false, err.Error()
		}
		col := slices.IndexFunc(table.ColumnDefinitions, func(c metav1.TableColumnDefinition) bool { return c.Name == "Event Types" })
		if col < 0 || len(table.Rows) != 1 {
			return false, fmt.Sprintf("table %+v", table)
		}
		got := table.Rows[0].Cells[col]
		return got == "order.>, invoice.*.paid", fmt.Sprintf("EVENT TYPES is %q, want %q", got, "order.>, invoice.*.paid")
	})
}
