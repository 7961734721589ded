package dispatcher

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

var (
	subscriptionsGVR = hooklinev1.GroupVersion.WithResource("webhooksubscriptions")
	secretsGVR       = hooklinev1.GroupVersion.WithResource("webhooksecrets")
	dispatchersGVR   = hooklinev1.GroupVersion.WithResource("webhookdispatchers")
)

// store is the dispatcher's typed view of the cluster: the subscriptions,
// WebhookSecrets and its own WebhookDispatcher, read through informers
// that convert each object once, as it arrives, so that neither a sync
// nor a status lookup decodes it again; and the namespaces, for the
// dispatcher's namespace selector. What it holds is shared with the
// informers' caches and must not be modified.
type store struct {
	// self is "namespace/name" of the dispatcher, as subscriptions'
	// status.dispatcher names it.
	self string

	subInf, wsInf, dispInf cache.SharedIndexInformer
	nsInf                  cache.SharedIndexInformer
	start                  func(stop <-chan struct{}) // starts the informers
}

// storeHandlers are told of the changes the store sees.
type storeHandlers struct {
	// subscription is told the "namespace/name" key of a subscription
	// added, changed or deleted.
	subscription func(key string)
	// dispatcher is told of any change of the WebhookDispatcher.
	dispatcher func()
	// webhookSecret is told of a WebhookSecret added, changed or deleted.
	webhookSecret func(namespace, name string)
	// namespace is told of a namespace changed.
	namespace func(name string)
}

// newStore creates the informers. They exist from the start, so that what
// runs beside the work loop (the status writer) can read them before they
// are started.
func newStore(kube kubernetes.Interface, dyn dynamic.Interface, namespace, name string) (*store, error) {
	s := &store{self: namespace + "/" + name}
	all := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	s.subInf = all.ForResource(subscriptionsGVR).Informer()
	if err := s.subInf.AddIndexers(cache.Indexers{uidIndex: indexByUID}); err != nil {
		return nil, fmt.Errorf("indexing subscriptions by uid: %w", err)
	}
	s.wsInf = all.ForResource(secretsGVR).Informer()
	own := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 10*time.Minute, namespace,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	s.dispInf = own.ForResource(dispatchersGVR).Informer()
	for _, err := range []error{
		s.subInf.SetTransform(convertOnce[hooklinev1.WebhookSubscription]),
		s.wsInf.SetTransform(convertOnce[hooklinev1.WebhookSecret]),
		s.dispInf.SetTransform(convertOnce[hooklinev1.WebhookDispatcher]),
	} {
		if err != nil {
			return nil, fmt.Errorf("converting objects as they arrive: %w", err)
		}
	}
	nsFactory := informers.NewSharedInformerFactory(kube, 10*time.Minute)
	s.nsInf = nsFactory.Core().V1().Namespaces().Informer()
	s.start = func(stop <-chan struct{}) {
		all.Start(stop)
		own.Start(stop)
		nsFactory.Start(stop)
	}
	return s, nil
}

// convertOnce converts an object of a dynamic informer to its type T once,
// before the informer stores it. An object that does not convert is kept
// as it came, and reading it reports why; anything else (an object
// converted already, which the informer may hand over again) is kept as it
// is.
func convertOnce[T any](o any) (any, error) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return o, nil
	}
	typed := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), typed); err != nil {
		return o, nil
	}
	return typed, nil
}

// handle registers what is told of the store's changes. It is called once,
// before the informers start.
func (s *store) handle(h storeHandlers) {
	byKey := func(o any) {
		if m, ok := objectMeta(o); ok {
			h.subscription(m.GetNamespace() + "/" + m.GetName())
		}
	}
	_, _ = s.subInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    byKey,
		UpdateFunc: func(_, n any) { byKey(n) },
		DeleteFunc: byKey,
	})
	dispatcher := func(any) { h.dispatcher() }
	_, _ = s.dispInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dispatcher,
		UpdateFunc: func(_, n any) { dispatcher(n) },
		DeleteFunc: dispatcher,
	})
	webhookSecret := func(o any) {
		if m, ok := objectMeta(o); ok {
			h.webhookSecret(m.GetNamespace(), m.GetName())
		}
	}
	_, _ = s.wsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    webhookSecret,
		UpdateFunc: func(_, n any) { webhookSecret(n) },
		DeleteFunc: webhookSecret,
	})
	_, _ = s.nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) {
			if ns, ok := n.(*corev1.Namespace); ok {
				h.namespace(ns.Name)
			}
		},
	})
}

// objectMeta is the metadata of an object an informer handed over, deleted
// ones included.
func objectMeta(o any) (metav1.Object, bool) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	m, err := meta.Accessor(o)
	return m, err == nil
}

// run starts the informers and waits until they have listed what the
// cluster holds; it returns false when ctx ended first.
func (s *store) run(ctx context.Context) bool {
	s.start(ctx.Done())
	return cache.WaitForCacheSync(ctx.Done(), s.subInf.HasSynced, s.wsInf.HasSynced, s.dispInf.HasSynced, s.nsInf.HasSynced)
}

// subscriptionKeys lists the "namespace/name" keys of the subscriptions
// in namespace, or of every subscription when namespace is "".
func (s *store) subscriptionKeys(namespace string) []string {
	var out []string
	for _, o := range s.subInf.GetStore().List() {
		if m, err := meta.Accessor(o); err == nil && (namespace == "" || m.GetNamespace() == namespace) {
			out = append(out, m.GetNamespace()+"/"+m.GetName())
		}
	}
	return out
}

// subscription returns the subscription key names, nil when there is none.
func (s *store) subscription(key string) (*hooklinev1.WebhookSubscription, error) {
	return typedByKey[hooklinev1.WebhookSubscription](s.subInf, key, "subscription")
}

// dispatcher returns the WebhookDispatcher served, nil when there is none.
func (s *store) dispatcher() (*hooklinev1.WebhookDispatcher, error) {
	return typedByKey[hooklinev1.WebhookDispatcher](s.dispInf, s.self, "dispatcher")
}

// webhookSecret returns a WebhookSecret, nil when there is none.
func (s *store) webhookSecret(ns, name string) (*hooklinev1.WebhookSecret, error) {
	return typedByKey[hooklinev1.WebhookSecret](s.wsInf, ns+"/"+name, "WebhookSecret")
}

// typedByKey returns the object an informer holds under key, nil when it
// holds none. One the transform could not convert is converted here, so
// that the error says why it cannot be read.
func typedByKey[T any](inf cache.SharedIndexInformer, key, what string) (*T, error) {
	o, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, err
	}
	if typed, ok := o.(*T); ok {
		return typed, nil
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("decoding %s %s: unexpected %T in the informer", what, key, o)
	}
	typed := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), typed); err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", what, key, err)
	}
	return typed, nil
}

// namespaceLabels returns the labels of a namespace, nil when it is
// unknown.
func (s *store) namespaceLabels(ns string) map[string]string {
	if o, ok, _ := s.nsInf.GetStore().GetByKey(ns); ok {
		return o.(*corev1.Namespace).Labels
	}
	return nil
}

// exists says whether a subscription token names a subscription of this
// dispatcher.
func (s *store) exists(token string) bool {
	uid, ok := strings.CutPrefix(token, queue.SubscriptionTokenPrefix)
	if !ok {
		return false
	}
	objs, err := s.subInf.GetIndexer().ByIndex(uidIndex, uid)
	return err == nil && len(objs) > 0
}

// uidIndex indexes the subscription informer by uid.
const uidIndex = "uid"

func indexByUID(o any) ([]string, error) {
	m, err := meta.Accessor(o)
	if err != nil {
		return nil, err
	}
	return []string{string(m.GetUID())}, nil
}
