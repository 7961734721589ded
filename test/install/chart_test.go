package install

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/hookline/hookline/test/testenv"
)

// dispatcherKind is the API version and kind of WebhookDispatcher as Helm's
// capabilities name it.
const dispatcherKind = "hookline.dev/v1alpha1/WebhookDispatcher"

// kubeVersion is the Kubernetes version the chart is rendered for, the test
// API server's.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "hookline") }

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir())
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return c
}

// release is what `helm install` would create.
type release struct {
	// objects of the release's manifest, the CRDs among them.
	objects []*unstructured.Unstructured
	// hooks, with the events they run on.
	hooks []*unstructured.Unstructured
	notes string
}

// all returns the objects and the hooks.
func (r *release) all() []*unstructured.Unstructured {
	return slices.Concat(r.objects, r.hooks)
}

// renderChart renders the chart as `helm install --dry-run` does, for a
// cluster serving the given extra API versions ("group/version/Kind").
func renderChart(t *testing.T, name, namespace string, values map[string]any, apiVersions ...string) (*release, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = name
	install.Namespace = namespace
	install.KubeVersion = kubeVersion
	install.APIVersions = apiVersions
	rel, err := install.Run(loadChart(t), values)
	if err != nil {
		return nil, err
	}
	out := &release{notes: rel.Info.Notes}
	if out.objects, err = decodeYAML([]byte(rel.Manifest)); err != nil {
		t.Fatal(err)
	}
	for _, h := range rel.Hooks {
		objs, err := decodeYAML([]byte(h.Manifest))
		if err != nil {
			t.Fatal(err)
		}
		out.hooks = append(out.hooks, objs...)
	}
	return out, nil
}

// mustRender renders the chart and fails the test on an error.
func mustRender(t *testing.T, values map[string]any, apiVersions ...string) *release {
	t.Helper()
	rel, err := renderChart(t, "hookline", "hookline-system", values, apiVersions...)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", values, err)
	}
	return rel
}

// valueCases are the values the chart is linted and rendered with.
var valueCases = map[string]map[string]any{
	"defaults":                nil,
	"crds disabled":           {"crds": map[string]any{"enabled": false}},
	"crds not kept":           {"crds": map[string]any{"keep": false}},
	"service monitor":         {"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}},
	"pdb and network policy":  {"pdb": map[string]any{"enabled": true}, "networkPolicy": map[string]any{"enabled": true, "apiServer": map[string]any{"cidrs": []any{"192.0.2.10/32"}, "ports": []any{6443}}}},
	"custom image":            {"image": map[string]any{"repository": "registry.example/mirror/hookline", "tag": "v9.9.9"}},
	"no dispatcher":           {"dispatcher": map[string]any{"enabled": false}},
	"no admission policy":     {"admissionPolicy": map[string]any{"enabled": false}},
	"webhook by cert-manager": {"webhook": map[string]any{"certManager": map[string]any{"enabled": true}}},
	"webhook off":             {"webhook": map[string]any{"enabled": false}},
	"no aggregation":          {"rbac": map[string]any{"aggregateToDefaultRoles": false}},
	"metrics off":             {"metrics": map[string]any{"enabled": false}},
	"external queue": {"dispatcher": map[string]any{
		"replicas": 3,
		"queue": map[string]any{"external": map[string]any{
			"url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222", "credentialsSecretRef": map[string]any{"name": "nats"}, "streamReplicas": 3,
		}},
		"allowedNamespaces": map[string]any{"from": "Selector", "selector": map[string]any{"matchLabels": map[string]any{"hookline": "enabled"}}},
		"egress":            map[string]any{"allowedCIDRs": []any{"10.0.0.0/8"}, "deniedCIDRs": []any{"10.1.0.0/16"}, "allowPlainHTTP": true, "proxyURL": "http://proxy.example:3128"},
		"resources":         map[string]any{"limits": map[string]any{"memory": "1Gi"}},
		"nodeSelector":      map[string]any{"egress": "fixed"},
		"priorityClassName": "hookline-critical",
	}},
}

// TestChartLints runs `helm lint` over every case of values: no errors,
// no warnings.
func TestChartLints(t *testing.T) {
	for name, values := range valueCases {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir(), values, "hookline-system", kubeVersion)
			for _, msg := range linter.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				}
			}
		})
	}
}

// TestChartDefaults checks what the chart installs with its default values.
func TestChartDefaults(t *testing.T) {
	rel := mustRender(t, nil)

	for _, want := range []struct{ kind, name string }{
		{"CustomResourceDefinition", "webhookdispatchers.hookline.dev"},
		{"CustomResourceDefinition", "webhooksecrets.hookline.dev"},
		{"CustomResourceDefinition", "webhooksubscriptions.hookline.dev"},
		{"ServiceAccount", "hookline-manager"},
		{"ClusterRole", "hookline-manager"},
		{"ClusterRoleBinding", "hookline-manager"},
		{"Role", "hookline-leader-election"},
		{"RoleBinding", "hookline-leader-election"},
		{"ClusterRole", "hookline-dispatcher"},
		{"ClusterRole", "hookline-dispatcher-local"},
		{"ClusterRole", "hookline-metrics-reader"},
		{"ClusterRole", "hookline-publisher"},
		{"ClusterRole", "hookline-subscription-editor"},
		{"ClusterRole", "hookline-subscription-viewer"},
		{"ValidatingAdmissionPolicy", "hookline-subscription-references"},
		{"ValidatingAdmissionPolicyBinding", "hookline-subscription-references"},
		{"Deployment", "hookline-manager"},
		{"Service", "hookline-webhook"},
		{"ValidatingWebhookConfiguration", "hookline-validating-webhook"},
	} {
		find(t, rel.objects, want.kind, want.name)
	}
	for _, kind := range []string{"ServiceMonitor", "Service", "PodDisruptionBudget", "NetworkPolicy", "Certificate", "Issuer"} {
		var objs []*unstructured.Unstructured
		for _, o := range ofKind(rel.all(), kind) {
			if o.GetName() != "hookline-webhook" || kind != "Service" {
				objs = append(objs, o)
			}
		}
		if len(objs) > 0 {
			t.Errorf("the defaults render the opt-in %s", describe(objs))
		}
	}
	for _, u := range rel.all() {
		if ns := u.GetNamespace(); ns != "" && ns != "hookline-system" {
			t.Errorf("%s %s is in the namespace %s, not the release's", u.GetKind(), u.GetName(), ns)
		}
		if u.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" || u.GetLabels()["app.kubernetes.io/instance"] != "hookline" {
			t.Errorf("%s %s lacks the chart's labels: %v", u.GetKind(), u.GetName(), u.GetLabels())
		}
	}
	for _, crd := range ofKind(rel.objects, "CustomResourceDefinition") {
		if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("CRD %s: helm.sh/resource-policy is %q, want keep", crd.GetName(), got)
		}
	}

	d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
	if got := ptr.Deref(d.Spec.Replicas, 0); got != 1 {
		t.Errorf("replicas = %d, want 1", got)
	}
	pod := d.Spec.Template.Spec
	if diff := cmp.Diff(&corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		RunAsGroup:     ptr.To[int64](65532),
		FSGroup:        ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}, pod.SecurityContext); diff != "" {
		t.Errorf("pod security context (-want +got):\n%s", diff)
	}
	if pod.ServiceAccountName != "hookline-manager" || !ptr.Deref(pod.AutomountServiceAccountToken, false) {
		t.Errorf("the pod runs as %q with automountServiceAccountToken %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("the pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if diff := cmp.Diff(&corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}, c.SecurityContext); diff != "" {
		t.Errorf("container security context (-want +got):\n%s", diff)
	}
	if c.Image != "ghcr.io/hookline/hookline:v0.1.0" || !slices.Equal(c.Command, []string{"/manager"}) {
		t.Errorf("the manager runs %v from %s, want /manager from ghcr.io/hookline/hookline:v0.1.0", c.Command, c.Image)
	}
	for _, arg := range []string{
		"--leader-elect",
		"--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8443",
		"--metrics-secure=true",
		"--dispatcher-image=ghcr.io/hookline/hookline:v0.1.0",
		"--dispatcher-cluster-role=hookline-dispatcher",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("the manager's arguments %q lack %s", c.Args, arg)
		}
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef == nil ||
		c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("env = %+v, want POD_NAMESPACE from metadata.namespace", c.Env)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port != intstr.FromString("health") {
			t.Errorf("probe %+v, want GET %s on the port health", probe, want)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" && p.ContainerPort == 8081 }) {
		t.Errorf("ports %+v lack health 8081", c.Ports)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v lack requests or limits", c.Resources)
	}

	// The default dispatcher is a post-install hook on a first install,
	// with the ownership metadata that lets a later upgrade adopt it.
	if len(ofKind(rel.objects, "WebhookDispatcher")) != 0 {
		t.Errorf("the WebhookDispatcher is in the manifest of a first install, whose kind Helm cannot map yet")
	}
	wd := find(t, rel.hooks, "WebhookDispatcher", "default")
	for k, want := range map[string]string{
		"helm.sh/hook":                   "post-install,post-upgrade",
		"helm.sh/hook-delete-policy":     "before-hook-creation",
		"helm.sh/resource-policy":        "keep",
		"meta.helm.sh/release-name":      "hookline",
		"meta.helm.sh/release-namespace": "hookline-system",
	} {
		if got := wd.GetAnnotations()[k]; got != want {
			t.Errorf("the dispatcher's annotation %s = %q, want %q", k, got, want)
		}
	}
	if diff := cmp.Diff(map[string]any{
		"replicas":               int64(1),
		"allowedNamespaces":      map[string]any{"from": "All"},
		"producerAuthentication": "ServiceAccountToken",
	}, wd.Object["spec"]); diff != "" {
		t.Errorf("the default dispatcher's spec (-want +got):\n%s", diff)
	}

	for name, labels := range map[string][]string{
		"hookline-publisher":           {"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"},
		"hookline-subscription-editor": {"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"},
		"hookline-subscription-viewer": {"rbac.authorization.k8s.io/aggregate-to-view"},
	} {
		role := find(t, rel.objects, "ClusterRole", name)
		for _, l := range labels {
			if role.GetLabels()[l] != "true" {
				t.Errorf("ClusterRole %s lacks the label %s=true", name, l)
			}
		}
	}
	publisher := convert[rbacv1.ClusterRole](t, find(t, rel.objects, "ClusterRole", "hookline-publisher"))
	if diff := cmp.Diff([]rbacv1.PolicyRule{{APIGroups: []string{"hookline.dev"}, Resources: []string{"webhookevents"}, Verbs: []string{"create"}}}, publisher.Rules); diff != "" {
		t.Errorf("hookline-publisher rules (-want +got):\n%s", diff)
	}
	viewer := convert[rbacv1.ClusterRole](t, find(t, rel.objects, "ClusterRole", "hookline-subscription-viewer"))
	if diff := cmp.Diff([]rbacv1.PolicyRule{{
		APIGroups: []string{"hookline.dev"},
		Resources: []string{"webhooksubscriptions", "webhooksecrets", "webhookdispatchers"},
		Verbs:     []string{"get", "list", "watch"},
	}}, viewer.Rules); diff != "" {
		t.Errorf("hookline-subscription-viewer rules (-want +got):\n%s", diff)
	}
	binding := convert[rbacv1.ClusterRoleBinding](t, find(t, rel.objects, "ClusterRoleBinding", "hookline-manager"))
	if diff := cmp.Diff([]rbacv1.Subject{{Kind: "ServiceAccount", Name: "hookline-manager", Namespace: "hookline-system"}}, binding.Subjects); diff != "" || binding.RoleRef.Name != "hookline-manager" {
		t.Errorf("the manager's ClusterRoleBinding binds %s to (-want +got):\n%s", binding.RoleRef.Name, diff)
	}
}

// TestChartValues checks what each opt-in and override changes.
func TestChartValues(t *testing.T) {
	tests := []struct {
		name        string
		values      map[string]any
		apiVersions []string
		check       func(t *testing.T, rel *release)
	}{{
		name:   "crds disabled",
		values: valueCases["crds disabled"],
		check: func(t *testing.T, rel *release) {
			if crds := ofKind(rel.all(), "CustomResourceDefinition"); len(crds) > 0 {
				t.Errorf("crds.enabled=false renders %s", describe(crds))
			}
			if !strings.Contains(rel.notes, "crds.enabled is false") {
				t.Errorf("the notes do not say the CRDs must come from elsewhere:\n%s", rel.notes)
			}
		},
	}, {
		name:   "crds not kept",
		values: valueCases["crds not kept"],
		check: func(t *testing.T, rel *release) {
			crds := ofKind(rel.objects, "CustomResourceDefinition")
			if len(crds) != 3 {
				t.Fatalf("%d CRDs rendered, want 3", len(crds))
			}
			for _, crd := range crds {
				if v, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
					t.Errorf("CRD %s keeps helm.sh/resource-policy=%s with crds.keep=false", crd.GetName(), v)
				}
				if crd.GetAnnotations()["controller-gen.kubebuilder.io/version"] == "" {
					t.Errorf("CRD %s lost its own annotations", crd.GetName())
				}
			}
		},
	}, {
		name:   "service monitor",
		values: valueCases["service monitor"],
		check: func(t *testing.T, rel *release) {
			sm := find(t, rel.objects, "ServiceMonitor", "hookline-manager")
			if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
				t.Errorf("ServiceMonitor apiVersion %s", sm.GetAPIVersion())
			}
			endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(endpoints) != 1 {
				t.Fatalf("ServiceMonitor endpoints %v, want one", endpoints)
			}
			ep := endpoints[0].(map[string]any)
			if ep["port"] != "https" || ep["scheme"] != "https" || ep["path"] != "/metrics" || ep["bearerTokenFile"] == nil {
				t.Errorf("ServiceMonitor endpoint %v, want an authenticated https scrape of /metrics", ep)
			}
			svc := convert[corev1.Service](t, find(t, rel.objects, "Service", "hookline-manager-metrics"))
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "https" || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].TargetPort != intstr.FromString("metrics") {
				t.Errorf("metrics Service ports %+v", svc.Spec.Ports)
			}
			selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			for k, v := range selector {
				if svc.Labels[k] != v {
					t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service lacks", k, v)
				}
			}
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			for k, v := range svc.Spec.Selector {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("the metrics Service selects %s=%s, which the manager's pods lack", k, v)
				}
			}
		},
	}, {
		name:   "pdb and network policy",
		values: valueCases["pdb and network policy"],
		check: func(t *testing.T, rel *release) {
			pdb := convert[policyv1.PodDisruptionBudget](t, find(t, rel.objects, "PodDisruptionBudget", "hookline-manager"))
			if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
				t.Errorf("PDB minAvailable %v maxUnavailable %v, want maxUnavailable 1", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
			}
			np := convert[networkingv1.NetworkPolicy](t, find(t, rel.objects, "NetworkPolicy", "hookline-manager"))
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			if diff := cmp.Diff(d.Spec.Selector.MatchLabels, np.Spec.PodSelector.MatchLabels); diff != "" {
				t.Errorf("the NetworkPolicy selects other pods than the manager's (-deployment +policy):\n%s", diff)
			}
			if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes); diff != "" {
				t.Errorf("policy types (-want +got):\n%s", diff)
			}
			var ingressPorts []int32
			for _, r := range np.Spec.Ingress {
				for _, p := range r.Ports {
					ingressPorts = append(ingressPorts, p.Port.IntVal)
				}
			}
			if !slices.Equal(ingressPorts, []int32{8081, 8443, 9443}) {
				t.Errorf("ingress ports %v, want the probes' 8081, the metrics' 8443 and the webhook's 9443 only", ingressPorts)
			}
			tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
			port := func(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }
			if diff := cmp.Diff([]networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{{Port: port(53), Protocol: &udp}, {Port: port(53), Protocol: &tcp}}},
				{
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(6443), Protocol: &tcp}},
					To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.10/32"}}},
				},
			}, np.Spec.Egress); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
		},
	}, {
		name:   "custom image",
		values: valueCases["custom image"],
		check: func(t *testing.T, rel *release) {
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example/mirror/hookline:v9.9.9" {
				t.Errorf("the manager's image is %s", c.Image)
			}
			if !slices.Contains(c.Args, "--dispatcher-image=registry.example/mirror/hookline:v9.9.9") {
				t.Errorf("the manager's arguments %q do not pass the image on to dispatchers", c.Args)
			}
			if got := d.Labels["app.kubernetes.io/version"]; got != "v9.9.9" {
				t.Errorf("app.kubernetes.io/version = %q, want the running image's v9.9.9", got)
			}
		},
	}, {
		name:   "image digest",
		values: map[string]any{"image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}},
		check: func(t *testing.T, rel *release) {
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			want := "ghcr.io/hookline/hookline:v0.1.0@sha256:" + strings.Repeat("ab", 32)
			if c := d.Spec.Template.Spec.Containers[0]; c.Image != want || !slices.Contains(c.Args, "--dispatcher-image="+want) {
				t.Errorf("image %s, arguments %q; want %s for both", c.Image, c.Args, want)
			}
		},
	}, {
		name:   "no dispatcher",
		values: valueCases["no dispatcher"],
		check: func(t *testing.T, rel *release) {
			if wds := ofKind(rel.all(), "WebhookDispatcher"); len(wds) > 0 {
				t.Errorf("dispatcher.enabled=false renders %s", describe(wds))
			}
			if !strings.Contains(rel.notes, "No default dispatcher") {
				t.Errorf("the notes do not say there is no default dispatcher:\n%s", rel.notes)
			}
		},
	}, {
		name:        "dispatcher kind served",
		apiVersions: []string{dispatcherKind},
		check: func(t *testing.T, rel *release) {
			// An upgrade: the dispatcher is an ordinary object, which Helm
			// updates in place instead of deleting and creating it.
			if len(rel.hooks) > 0 {
				t.Errorf("hooks %s once the kind is served", describe(rel.hooks))
			}
			wd := find(t, rel.objects, "WebhookDispatcher", "default")
			if _, ok := wd.GetAnnotations()["helm.sh/hook"]; ok {
				t.Errorf("the dispatcher is still a hook: %v", wd.GetAnnotations())
			}
			if wd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
				t.Errorf("the dispatcher lacks helm.sh/resource-policy=keep: %v", wd.GetAnnotations())
			}
		},
	}, {
		name:   "external queue",
		values: valueCases["external queue"],
		check: func(t *testing.T, rel *release) {
			wd := find(t, rel.hooks, "WebhookDispatcher", "default")
			if diff := cmp.Diff(map[string]any{
				"replicas": int64(3),
				"queue": map[string]any{"external": map[string]any{
					"url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222", "credentialsSecretRef": map[string]any{"name": "nats"}, "streamReplicas": int64(3),
				}},
				"allowedNamespaces": map[string]any{"from": "Selector", "selector": map[string]any{"matchLabels": map[string]any{"hookline": "enabled"}}},
				"egress": map[string]any{
					"allowedCIDRs": []any{"10.0.0.0/8"}, "deniedCIDRs": []any{"10.1.0.0/16"}, "allowPlainHTTP": true, "proxyURL": "http://proxy.example:3128",
				},
				"resources":              map[string]any{"limits": map[string]any{"memory": "1Gi"}},
				"nodeSelector":           map[string]any{"egress": "fixed"},
				"priorityClassName":      "hookline-critical",
				"producerAuthentication": "ServiceAccountToken",
			}, wd.Object["spec"]); diff != "" {
				t.Errorf("dispatcher spec (-want +got):\n%s", diff)
			}
		},
	}, {
		name:   "no admission policy",
		values: valueCases["no admission policy"],
		check: func(t *testing.T, rel *release) {
			for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
				if objs := ofKind(rel.all(), kind); len(objs) > 0 {
					t.Errorf("admissionPolicy.enabled=false renders %s", describe(objs))
				}
			}
		},
	}, {
		name:   "no aggregation",
		values: valueCases["no aggregation"],
		check: func(t *testing.T, rel *release) {
			for _, name := range []string{"hookline-publisher", "hookline-subscription-editor", "hookline-subscription-viewer"} {
				for l := range find(t, rel.objects, "ClusterRole", name).GetLabels() {
					if strings.HasPrefix(l, "rbac.authorization.k8s.io/aggregate-to-") {
						t.Errorf("ClusterRole %s is aggregated (%s) with rbac.aggregateToDefaultRoles=false", name, l)
					}
				}
			}
		},
	}, {
		name:   "metrics off",
		values: valueCases["metrics off"],
		check: func(t *testing.T, rel *release) {
			c := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager")).Spec.Template.Spec.Containers[0]
			if !slices.Contains(c.Args, "--metrics-bind-address=0") || slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
				t.Errorf("arguments %q, ports %+v; want the metrics endpoint off", c.Args, c.Ports)
			}
		},
	}, {
		name:   "existing service account",
		values: map[string]any{"serviceAccount": map[string]any{"create": false, "name": "platform-hookline"}},
		check: func(t *testing.T, rel *release) {
			if sas := ofKind(rel.objects, "ServiceAccount"); len(sas) > 0 {
				t.Errorf("serviceAccount.create=false renders %s", describe(sas))
			}
			for _, b := range slices.Concat(ofKind(rel.objects, "ClusterRoleBinding"), ofKind(rel.objects, "RoleBinding")) {
				subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
				if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != "platform-hookline" {
					t.Errorf("%s %s binds %v, want platform-hookline", b.GetKind(), b.GetName(), subjects)
				}
			}
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			if d.Spec.Template.Spec.ServiceAccountName != "platform-hookline" {
				t.Errorf("the manager runs as %s", d.Spec.Template.Spec.ServiceAccountName)
			}
		},
	}, {
		name:   "two replicas and a minimum available",
		values: map[string]any{"replicas": 2, "pdb": map[string]any{"enabled": true, "minAvailable": 1}},
		check: func(t *testing.T, rel *release) {
			d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
			pdb := convert[policyv1.PodDisruptionBudget](t, find(t, rel.objects, "PodDisruptionBudget", "hookline-manager"))
			if ptr.Deref(d.Spec.Replicas, 0) != 2 || pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) || pdb.Spec.MaxUnavailable != nil {
				t.Errorf("replicas %v, PDB minAvailable %v maxUnavailable %v", d.Spec.Replicas, pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustRender(t, tt.values, tt.apiVersions...))
		})
	}
}

// TestChartRefusesUnknownValues checks that the values schema turns a typo
// into an error naming it, instead of a value silently ignored.
func TestChartRefusesUnknownValues(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"top level", map[string]any{"replicaCount": 2}, []string{"replicaCount"}},
		{"nested", map[string]any{"crds": map[string]any{"enable": true}}, []string{"/crds", "enable"}},
		{"dispatcher queue", map[string]any{"dispatcher": map[string]any{"queue": map[string]any{"embeded": map[string]any{"size": "2Gi"}}}}, []string{"/dispatcher/queue", "embeded"}},
		{"enum", map[string]any{"dispatcher": map[string]any{"allowedNamespaces": map[string]any{"from": "Everyone"}}}, []string{"/dispatcher/allowedNamespaces/from"}},
		{"type", map[string]any{"replicas": "two"}, []string{"/replicas"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(t, "hookline", "hookline-system", tt.values)
			if err == nil {
				t.Fatalf("the chart rendered with %v", tt.values)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not name %q: %v", want, err)
				}
			}
		})
	}
	t.Run("helm lint", func(t *testing.T) {
		linter := lint.AllWithKubeVersion(chartDir(), map[string]any{"replicaCount": 2}, "hookline-system", kubeVersion)
		var errs []string
		for _, msg := range linter.Messages {
			if msg.Severity == support.ErrorSev {
				errs = append(errs, msg.Error())
			}
		}
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "replicaCount") }) {
			t.Errorf("helm lint with replicaCount reported the errors %q, want one naming it", errs)
		}
	})
	t.Run("missing service account name", func(t *testing.T) {
		_, err := renderChart(t, "hookline", "hookline-system", map[string]any{"serviceAccount": map[string]any{"create": false}})
		if err == nil || !strings.Contains(err.Error(), "serviceAccount.name") {
			t.Errorf("rendering without a ServiceAccount to run as: %v, want an error naming serviceAccount.name", err)
		}
	})
}

// TestChartMatchesConfig checks that the chart installs what config/
// declares: the CRDs, the generated manager ClusterRole, the dispatcher
// ClusterRoles the manager binds by name, the admission policy and the
// ClusterRoles for users, each equal but for the metadata the chart sets.
func TestChartMatchesConfig(t *testing.T) {
	rel := mustRender(t, nil)
	config, err := testenv.ReadManifests("config/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds, err := testenv.ReadManifests("config/crd/bases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config = append(config, crds...)
	for _, want := range []struct{ kind, configName, chartName string }{
		{"CustomResourceDefinition", "webhookdispatchers.hookline.dev", "webhookdispatchers.hookline.dev"},
		{"CustomResourceDefinition", "webhooksecrets.hookline.dev", "webhooksecrets.hookline.dev"},
		{"CustomResourceDefinition", "webhooksubscriptions.hookline.dev", "webhooksubscriptions.hookline.dev"},
		{"ClusterRole", "hookline-manager", "hookline-manager"},
		{"Role", "hookline-leader-election", "hookline-leader-election"},
		{"ClusterRole", "hookline-dispatcher", "hookline-dispatcher"},
		{"ClusterRole", "hookline-dispatcher-local", "hookline-dispatcher-local"},
		{"ClusterRole", "hookline-metrics-reader", "hookline-metrics-reader"},
		{"ValidatingAdmissionPolicy", "hookline-subscription-references", "hookline-subscription-references"},
		{"ValidatingAdmissionPolicyBinding", "hookline-subscription-references", "hookline-subscription-references"},
		// config/default installs the same ClusterRoles for users.
		{"ClusterRole", "hookline-publisher", "hookline-publisher"},
		{"ClusterRole", "hookline-subscription-editor", "hookline-subscription-editor"},
		{"ClusterRole", "hookline-subscription-viewer", "hookline-subscription-viewer"},
	} {
		t.Run(want.kind+"/"+want.chartName, func(t *testing.T) {
			if diff := cmp.Diff(withoutMetadata(t, find(t, config, want.kind, want.configName)), withoutMetadata(t, find(t, rel.objects, want.kind, want.chartName))); diff != "" {
				t.Errorf("the chart's %s differs from config/ (-config +chart):\n%s", want.kind, diff)
			}
		})
	}
}

// withoutMetadata is an object's content but for its metadata, with numbers
// as JSON decodes them, so objects read by different decoders compare.
func withoutMetadata(t *testing.T, u *unstructured.Unstructured) map[string]any {
	t.Helper()
	content := u.DeepCopy().Object
	delete(content, "metadata")
	data, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChartNotes checks the instructions printed after an install.
func TestChartNotes(t *testing.T) {
	rel, err := renderChart(t, "hooks", "platform", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kubectl get hookline -A",
		"http://default-dispatcher.platform.svc:8080",
		"--clusterrole=hookline-publisher",
		"audience: hookline",
		`-H "Authorization: Bearer $(cat /var/run/secrets/hookline/token)"`,
		`-d '{"type":"order.created","data":{"order":"1042","total":42}}'`,
		"http://default-dispatcher.platform.svc:8080/v1/namespaces/shop/events",
		"deployment/hooks-hookline-manager",
	} {
		if !strings.Contains(rel.notes, want) {
			t.Errorf("the notes lack %q:\n%s", want, rel.notes)
		}
	}

	anonymous, err := renderChart(t, "hooks", "platform", map[string]any{"dispatcher": map[string]any{"producerAuthentication": "None"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(anonymous.notes, "Authorization: Bearer") || !strings.Contains(anonymous.notes, "without authentication") {
		t.Errorf("the notes for producerAuthentication None still ask for a token:\n%s", anonymous.notes)
	}
}

// TestChartInstalls applies the rendered chart to the API server, as
// `helm install` would create it, CRDs first, and the default dispatcher
// (a post-install hook) last. The API server must accept every object, the
// Deployment must pass the restricted Pod Security level of the namespace,
// and the dispatcher's spec must pass the CRD's validation.
func TestChartInstalls(t *testing.T) {
	ns := newNamespace(t)
	rel, err := renderChart(t, "hookline", ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The ServiceMonitor's CRD belongs to the Prometheus Operator, absent
	// here; the defaults must not render one.
	if sms := ofKind(rel.all(), "ServiceMonitor"); len(sms) > 0 {
		t.Fatalf("the defaults render %s", describe(sms))
	}
	install(t, slices.Concat(rel.objects, rel.hooks), "helm")
	for _, u := range rel.all() {
		getBack(t, u)
	}
	wd := getBack(t, find(t, rel.hooks, "WebhookDispatcher", "default"))
	if from, _, _ := unstructured.NestedString(wd.Object, "spec", "allowedNamespaces", "from"); from != "All" {
		t.Errorf("the stored default dispatcher admits %q namespaces, want All", from)
	}

	// Every variant of the dispatcher's values yields a spec the CRD
	// accepts (its CEL rules included), and so does the manager of every
	// variant of the values.
	for name, values := range valueCases {
		t.Run(name, func(t *testing.T) {
			rel, err := renderChart(t, "hookline", ns, values, dispatcherKind)
			if err != nil {
				t.Fatal(err)
			}
			warnings.take()
			for _, u := range rel.all() {
				// The test API server serves neither the Prometheus
				// operator's kinds nor cert-manager's.
				if k := u.GetKind(); k != "ServiceMonitor" && k != "Certificate" && k != "Issuer" {
					apply(t, u, "helm", true)
				}
			}
			if w := warnings.take(); len(w) > 0 {
				t.Errorf("the API server warned:\n%s", strings.Join(w, "\n"))
			}
		})
	}
}

// TestPodSecurityWarnings checks that the warnings install fails on do
// come: a Deployment that breaks the restricted level draws one.
func TestPodSecurityWarnings(t *testing.T) {
	ns := newNamespace(t)
	d := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "privileged", "namespace": ns},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "privileged"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "privileged"}},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "c", "image": "example.invalid/c", "securityContext": map[string]any{"privileged": true},
				}}},
			},
		},
	}}
	warnings.take()
	apply(t, d, "test", true)
	w := warnings.take()
	if !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "restricted") }) {
		t.Errorf("a privileged Deployment in a restricted namespace drew the warnings %q, want a Pod Security one", w)
	}
}

// TestChartWebhook checks the admission webhook's wiring: the manager's
// flags, the Service and the configuration, with the manager's own
// certificate or cert-manager's.
func TestChartWebhook(t *testing.T) {
	rel := mustRender(t, nil)
	d := convert[appsv1.Deployment](t, find(t, rel.objects, "Deployment", "hookline-manager"))
	args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--webhook-port=9443", "--webhook-service=hookline-webhook", "--webhook-cert-secret=hookline-webhook-tls"} {
		if !strings.Contains(args, want) {
			t.Errorf("manager args %q lack %s", args, want)
		}
	}
	if strings.Contains(args, "--webhook-cert-dir") {
		t.Errorf("without cert-manager the manager keeps its own certificate, but args are %q", args)
	}
	vwc := find(t, rel.objects, "ValidatingWebhookConfiguration", "hookline-validating-webhook")
	hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("webhooks = %v, want one", hooks)
	}
	hook := hooks[0].(map[string]any)
	if hook["failurePolicy"] != "Fail" {
		t.Errorf("failurePolicy = %v, want Fail", hook["failurePolicy"])
	}
	if svc, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "name"); svc != "hookline-webhook" {
		t.Errorf("the webhook calls Service %q, want hookline-webhook", svc)
	}

	cm := mustRender(t, map[string]any{"webhook": map[string]any{"certManager": map[string]any{"enabled": true}}})
	d = convert[appsv1.Deployment](t, find(t, cm.objects, "Deployment", "hookline-manager"))
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--webhook-cert-dir=/var/run/hookline/webhook-certs") {
		t.Errorf("with cert-manager the manager reads the mounted certificate, but args are %q", args)
	}
	find(t, cm.objects, "Certificate", "hookline-webhook")
	find(t, cm.objects, "Issuer", "hookline-webhook")
	vwc = find(t, cm.objects, "ValidatingWebhookConfiguration", "hookline-validating-webhook")
	if got := vwc.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "hookline-system/hookline-webhook" {
		t.Errorf("cert-manager.io/inject-ca-from = %q", got)
	}

	off := mustRender(t, map[string]any{"webhook": map[string]any{"enabled": false}})
	if objs := ofKind(off.all(), "ValidatingWebhookConfiguration"); len(objs) > 0 {
		t.Errorf("webhook.enabled=false renders %s", describe(objs))
	}
}
