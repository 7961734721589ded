package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// dispatcherIngestPort is the port of the ingest API in dispatcher pods.
const dispatcherIngestPort = 8080

// portForward listens on a free local port and forwards it to the ingest
// port of a Ready pod of the WebhookDispatcher ns/name, found through the
// dispatcher's status.selector, as kubectl port-forward does. It returns the
// local base URL and a function that ends the forwarding.
func (a *app) portForward(ctx context.Context, ns, name string) (string, func(), error) {
	ref := ns + "/" + name
	hl, err := a.hooklineClient()
	if err != nil {
		return "", nil, err
	}
	d, err := hl.dispatcher(ctx, ns, name)
	if err != nil {
		return "", nil, apiError(err, "webhookdispatcher "+ref, "name an existing one with --dispatcher NAMESPACE/NAME, or pass --ingest-url")
	}
	if d.Status.Selector == "" {
		return "", nil, &noPodError{fmt.Sprintf("webhookdispatcher %s reports no pod selector yet; check kubectl get webhookdispatcher %s -n %s, or pass --ingest-url", ref, name, ns)}
	}
	kube, err := a.kubeClient()
	if err != nil {
		return "", nil, err
	}
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: d.Status.Selector})
	if err != nil {
		return "", nil, apiError(err, "the pods of webhookdispatcher "+ref, "pass --ingest-url")
	}
	pod := readyPod(pods.Items)
	if pod == "" {
		return "", nil, &noPodError{fmt.Sprintf("no Ready pod of webhookdispatcher %s; check kubectl get pods -n %s -l %s, or pass --ingest-url", ref, ns, d.Status.Selector)}
	}

	cfg, err := a.restConfig()
	if err != nil {
		return "", nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("preparing the port-forward: %w", err)
	}
	target := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, target)
	fwdCtx, stop := context.WithCancel(ctx)
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(fwdCtx, dialer, []string{"127.0.0.1"},
		[]string{"0:" + strconv.Itoa(dispatcherIngestPort)}, ready, io.Discard, a.errOut)
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("preparing the port-forward: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		stop()
		return "", nil, fmt.Errorf("port-forwarding to pod %s/%s: %v; pass --ingest-url instead", ns, pod, err)
	case <-ctx.Done():
		stop()
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		stop()
		return "", nil, fmt.Errorf("port-forwarding to pod %s/%s: no local port: %v", ns, pod, err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", ports[0].Local), stop, nil
}

// readyPod picks, by name for a stable choice, a running pod whose Ready
// condition is true; "" if none is.
func readyPod(pods []corev1.Pod) string {
	var names []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				names = append(names, p.Name)
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	return slices.Min(names)
}
