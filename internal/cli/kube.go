package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Resource names of the Hookline kinds in the API.
const (
	resourceSubscriptions = "webhooksubscriptions"
	resourceSecrets       = "webhooksecrets"
	resourceDispatchers   = "webhookdispatchers"
)

// hooklineClient reads and patches the Hookline kinds with the user's
// kubeconfig credentials.
type hooklineClient struct {
	rc rest.Interface
}

func newHooklineClient(cfg *rest.Config) (*hooklineClient, error) {
	scheme := runtime.NewScheme()
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering the Hookline kinds: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &hooklinev1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", hooklinev1.GroupVersion, err)
	}
	return &hooklineClient{rc: rc}, nil
}

func (c *hooklineClient) subscription(ctx context.Context, ns, name string) (*hooklinev1.WebhookSubscription, error) {
	sub := &hooklinev1.WebhookSubscription{}
	err := c.rc.Get().Namespace(ns).Resource(resourceSubscriptions).Name(name).Do(ctx).Into(sub)
	return sub, err
}

// subscriptions lists a namespace's subscriptions, or every namespace's
// when ns is empty.
func (c *hooklineClient) subscriptions(ctx context.Context, ns string) (*hooklinev1.WebhookSubscriptionList, error) {
	list := &hooklinev1.WebhookSubscriptionList{}
	req := c.rc.Get().Resource(resourceSubscriptions)
	if ns != "" {
		req = req.Namespace(ns)
	}
	err := req.Do(ctx).Into(list)
	return list, err
}

func (c *hooklineClient) webhookSecret(ctx context.Context, ns, name string) (*hooklinev1.WebhookSecret, error) {
	ws := &hooklinev1.WebhookSecret{}
	err := c.rc.Get().Namespace(ns).Resource(resourceSecrets).Name(name).Do(ctx).Into(ws)
	return ws, err
}

func (c *hooklineClient) dispatcher(ctx context.Context, ns, name string) (*hooklinev1.WebhookDispatcher, error) {
	d := &hooklinev1.WebhookDispatcher{}
	err := c.rc.Get().Namespace(ns).Resource(resourceDispatchers).Name(name).Do(ctx).Into(d)
	return d, err
}

// annotateSecret sets one annotation of a WebhookSecret with a merge patch,
// which touches nothing else and needs no resourceVersion.
func (c *hooklineClient) annotateSecret(ctx context.Context, ns, name, key, value string) (*hooklinev1.WebhookSecret, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	ws := &hooklinev1.WebhookSecret{}
	err = c.rc.Patch(types.MergePatchType).Namespace(ns).Resource(resourceSecrets).Name(name).Body(patch).Do(ctx).Into(ws)
	return ws, err
}

// apiError turns an error of the Kubernetes API into one line that says
// what to do: what names the object ("subscription shop/billing"), and
// notFoundHint is the advice when it does not exist.
func apiError(err error, what, notFoundHint string) error {
	switch {
	case apierrors.IsNotFound(err):
		if resourceUnknown(err) {
			return fmt.Errorf("the Hookline API (%s) is not installed on this cluster; install Hookline first, or check --context", hooklinev1.GroupVersion)
		}
		return fmt.Errorf("%s not found; %s", what, notFoundHint)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden: %s; ask for that permission, or use another --context", apiMessage(err))
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server refused the kubeconfig's credentials (%s); log in again, or check --context and --kubeconfig", apiMessage(err))
	case isConnectionError(err):
		return fmt.Errorf("cannot reach the API server: %v; check --kubeconfig, --context and --server", err)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// resourceUnknown tells a 404 for a missing object, which names it, from
// the API server not serving the resource at all (the CRDs are missing),
// whose answer names nothing or is not a Status.
func resourceUnknown(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	details := status.Status().Details
	if details == nil || details.Name == "" {
		return true
	}
	for _, c := range details.Causes {
		if c.Type == metav1.CauseTypeUnexpectedServerResponse {
			return true
		}
	}
	return false
}

func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

func isConnectionError(err error) bool {
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr)
}
