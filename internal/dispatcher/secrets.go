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

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// secretWatcher watches the individual Secrets the served subscriptions
// need, one watch per Secret (as the kubelet does for the Secrets its pods
// mount). The dispatcher's RBAC grants Secrets only by name, per namespace,
// and a list or watch narrowed to one name by field selector is authorised
// against such a grant; a namespace-wide Secret informer would need far
// more.
type secretWatcher struct {
	client   kubernetes.Interface
	onChange func(types.NamespacedName)

	mu      sync.Mutex
	watches map[types.NamespacedName]*secretWatch
}

type secretWatch struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	users    map[string]struct{}
}

func newSecretWatcher(client kubernetes.Interface, onChange func(types.NamespacedName)) *secretWatcher {
	return &secretWatcher{client: client, onChange: onChange, watches: map[types.NamespacedName]*secretWatch{}}
}

// use records that user needs the Secret key, starting its watch when it
// is the first user, and returns the Secret as last seen (nil while it is
// unknown or absent).
func (w *secretWatcher) use(ctx context.Context, key types.NamespacedName, user string) *corev1.Secret {
	w.mu.Lock()
	sw, ok := w.watches[key]
	if !ok {
		sw = w.start(ctx, key)
		w.watches[key] = sw
	}
	sw.users[user] = struct{}{}
	w.mu.Unlock()
	return getSecret(sw.informer, key)
}

// release drops user from every Secret it used except keep, stopping
// watches nobody needs any more.
func (w *secretWatcher) release(user string, keep map[types.NamespacedName]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, sw := range w.watches {
		if keep[key] {
			continue
		}
		delete(sw.users, user)
		if len(sw.users) == 0 {
			sw.stop()
			delete(w.watches, key)
		}
	}
}

// synced says whether every watched Secret has been listed once.
func (w *secretWatcher) synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, sw := range w.watches {
		if !sw.informer.HasSynced() {
			return false
		}
	}
	return true
}

func (w *secretWatcher) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, sw := range w.watches {
		sw.stop()
		delete(w.watches, key)
	}
}

func (w *secretWatcher) start(ctx context.Context, key types.NamespacedName) *secretWatch {
	selector := fields.OneTermEqualSelector("metadata.name", key.Name).String()
	secrets := w.client.CoreV1().Secrets(key.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return secrets.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return secrets.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 10*time.Minute, cache.Indexers{})
	notify := func(any) { w.onChange(key) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n any) { notify(n) },
		DeleteFunc: notify,
	})
	ctx, cancel := context.WithCancel(ctx)
	go inf.RunWithContext(ctx)
	return &secretWatch{informer: inf, stop: cancel, users: map[string]struct{}{}}
}

func getSecret(inf cache.SharedIndexInformer, key types.NamespacedName) *corev1.Secret {
	obj, ok, err := inf.GetStore().GetByKey(key.String())
	if err != nil || !ok {
		return nil
	}
	s, _ := obj.(*corev1.Secret)
	return s
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
