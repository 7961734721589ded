package dispatcher

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// refKind is the kind of object a subscription references by name.
type refKind string

const (
	kindSecret    refKind = "Secret"
	kindConfigMap refKind = "ConfigMap"
)

// refKey names one Secret or ConfigMap.
type refKey struct {
	Kind refKind
	types.NamespacedName
}

// refWatcher watches the individual Secrets and ConfigMaps the served
// subscriptions need, one watch per object (as the kubelet does for the
// Secrets its pods mount). The dispatcher's RBAC grants them only by name,
// per namespace, and a list or watch narrowed to one name by field selector
// is authorised against such a grant; a namespace-wide informer would need
// far more.
type refWatcher struct {
	client   kubernetes.Interface
	onChange func(refKey)

	mu      sync.Mutex
	watches map[refKey]*refWatch
}

type refWatch struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	users    map[string]struct{}
}

func newRefWatcher(client kubernetes.Interface, onChange func(refKey)) *refWatcher {
	return &refWatcher{client: client, onChange: onChange, watches: map[refKey]*refWatch{}}
}

// secret records that user needs the Secret, starting its watch when it is
// the first user, and returns it as last seen (nil while it is unknown or
// absent).
func (w *refWatcher) secret(ctx context.Context, key types.NamespacedName, user string) *corev1.Secret {
	s, _ := w.use(ctx, refKey{kindSecret, key}, user).(*corev1.Secret)
	return s
}

// configMap is secret for a ConfigMap.
func (w *refWatcher) configMap(ctx context.Context, key types.NamespacedName, user string) *corev1.ConfigMap {
	c, _ := w.use(ctx, refKey{kindConfigMap, key}, user).(*corev1.ConfigMap)
	return c
}

func (w *refWatcher) use(ctx context.Context, key refKey, user string) any {
	w.mu.Lock()
	rw, ok := w.watches[key]
	if !ok {
		rw = w.start(ctx, key)
		w.watches[key] = rw
	}
	rw.users[user] = struct{}{}
	w.mu.Unlock()
	obj, ok, err := rw.informer.GetStore().GetByKey(key.String())
	if err != nil || !ok {
		return nil
	}
	return obj
}

// release drops user from every object it used except keep, stopping
// watches nobody needs any more.
func (w *refWatcher) release(user string, keep map[refKey]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, rw := range w.watches {
		if keep[key] {
			continue
		}
		delete(rw.users, user)
		if len(rw.users) == 0 {
			rw.stop()
			delete(w.watches, key)
		}
	}
}

// synced says whether every watched object has been listed once.
func (w *refWatcher) synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rw := range w.watches {
		if !rw.informer.HasSynced() {
			return false
		}
	}
	return true
}

func (w *refWatcher) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, rw := range w.watches {
		rw.stop()
		delete(w.watches, key)
	}
}

func (w *refWatcher) start(ctx context.Context, key refKey) *refWatch {
	selector := fields.OneTermEqualSelector("metadata.name", key.Name).String()
	var lw *cache.ListWatch
	var example runtime.Object
	narrow := func(o metav1.ListOptions) metav1.ListOptions { o.FieldSelector = selector; return o }
	switch key.Kind {
	case kindConfigMap:
		configMaps := w.client.CoreV1().ConfigMaps(key.Namespace)
		example = &corev1.ConfigMap{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return configMaps.List(ctx, narrow(o))
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return configMaps.Watch(ctx, narrow(o))
			},
		}
	default:
		secrets := w.client.CoreV1().Secrets(key.Namespace)
		example = &corev1.Secret{}
		lw = &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return secrets.List(ctx, narrow(o))
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return secrets.Watch(ctx, narrow(o))
			},
		}
	}
	inf := cache.NewSharedIndexInformer(lw, example, 10*time.Minute, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(quietWatchErrors(clock.RealClock{}))
	notify := func(any) { w.onChange(key) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n any) { notify(n) },
		DeleteFunc: notify,
	})
	ctx, cancel := context.WithCancel(ctx)
	go inf.RunWithContext(ctx)
	return &refWatch{informer: inf, stop: cancel, users: map[string]struct{}{}}
}

// signingKeys returns the keys that sign now, from the Secret a WebhookSecret
// owns: the current key, then the previous one while its overlap window
// lasts. The error never quotes key material.
func signingKeys(s *corev1.Secret, now time.Time) ([]keys.Key, error) {
	current, ok := s.Data[hooklinev1.SecretKeySigningKey]
	if !ok {
		return nil, fmt.Errorf("secret %s has no key %q", s.Name, hooklinev1.SecretKeySigningKey)
	}
	k, err := keys.Parse(string(current))
	if err != nil {
		return nil, fmt.Errorf("secret %s, key %q: %w", s.Name, hooklinev1.SecretKeySigningKey, err)
	}
	out := []keys.Key{k}
	prev, ok := s.Data[hooklinev1.SecretKeyPreviousSigningKey]
	if !ok {
		return out, nil
	}
	if exp, err := time.Parse(time.RFC3339, s.Annotations[hooklinev1.AnnotationPreviousKeyExpiresAt]); err == nil && !now.Before(exp) {
		return out, nil
	}
	pk, err := keys.Parse(string(prev))
	if err != nil {
		return nil, fmt.Errorf("secret %s, key %q: %w", s.Name, hooklinev1.SecretKeyPreviousSigningKey, err)
	}
	return append(out, pk), nil
}
