package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// dispatcherFinalizer holds a WebhookDispatcher until the objects it cannot
// own (its ClusterRoleBinding, its Secret access in other namespaces) are
// deleted.
const dispatcherFinalizer = "hookline.dev/dispatcher-cleanup"

// The manager creates Roles granting Secret, ConfigMap, Lease and Event
// access, which RBAC allows only to a holder of those permissions; it binds
// the dispatcher ClusterRole with the bind verb instead of holding it all.
//
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers/finalizers,verbs=update
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksubscriptions;webhooksecrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterrolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=hookline-dispatcher
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// WebhookDispatcherReconciler renders each WebhookDispatcher into a
// StatefulSet, Service, ServiceAccount, RBAC and PodDisruptionBudget,
// server-side applied, and reports the address and availability.
type WebhookDispatcherReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Clock    clock.WithTicker
	// DefaultImage is the dispatcher image unless the spec overrides it.
	DefaultImage string
	// ClusterRole is bound to every dispatcher's ServiceAccount.
	ClusterRole string
	// DefaultDispatcher serves subscriptions without dispatcherRef.
	DefaultDispatcher types.NamespacedName
}

// SetupWithManager registers the reconciler and its watches.
func (r *WebhookDispatcherReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.WebhookDispatcher{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		// The Secrets a dispatcher may read follow its subscriptions'
		// specs; their status, which the dispatcher writes often, does not
		// matter here.
		Watches(&hooklinev1.WebhookSubscription{},
			handler.EnqueueRequestsFromMapFunc(r.dispatcherOfSubscription),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&hooklinev1.WebhookSecret{},
			handler.EnqueueRequestsFromMapFunc(r.dispatchersOfWebhookSecret),
			builder.WithPredicates(dispatcherSigningSecretMoved)).
		// Admission by namespace selector follows namespace labels.
		Watches(&corev1.Namespace{},
			handler.EnqueueRequestsFromMapFunc(r.dispatchersOfNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// Objects without an owner reference find their dispatcher by label.
		Watches(&rbacv1.ClusterRoleBinding{}, handler.EnqueueRequestsFromMapFunc(dispatcherOfLabels)).
		Watches(&rbacv1.Role{}, handler.EnqueueRequestsFromMapFunc(dispatcherOfLabels)).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(dispatcherOfLabels)).
		Complete(r)
}

// Reconcile applies everything the dispatcher needs and reports whether its
// instances are available.
func (r *WebhookDispatcherReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	d := &hooklinev1.WebhookDispatcher{}
	if err := r.Get(ctx, req.NamespacedName, d); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	var (
		out outcome
		// sts is the StatefulSet as the API server returned it; nil while
		// there is none.
		sts *appsv1.StatefulSet
		// released: the finalizer is gone and so, possibly, the object.
		released bool
	)
	defer func() {
		if released {
			return
		}
		st := dispatcherStatus(d, sts, out, metav1.NewTime(r.Clock.Now()))
		// A dispatcher deleted meanwhile has no status left to write.
		if err := applyStatus(ctx, r.Client, d, &st); client.IgnoreNotFound(err) != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if !d.DeletionTimestamp.IsZero() {
		if err := r.finalize(ctx, d); err != nil {
			out = errorOutcome(err)
			sts = r.observeStatefulSet(ctx, d)
			return ctrl.Result{}, err
		}
		released = true
		return ctrl.Result{}, nil
	}

	if msg, ok := validDispatcherSpec(d); !ok {
		out = outcome{phase: phaseStalled, reason: hooklinev1.ReasonInvalidSpec, message: msg}
		r.reportStalled(ctx, d, out)
		sts = r.observeStatefulSet(ctx, d)
		return ctrl.Result{}, nil
	}

	if err := r.ensureFinalizer(ctx, d); err != nil {
		out = errorOutcome(err)
		sts = r.observeStatefulSet(ctx, d)
		return ctrl.Result{}, err
	}

	var err error
	if sts, err = r.applyDispatcher(ctx, d); err == nil {
		err = r.applySecretAccess(ctx, d)
	}
	if err != nil {
		out = outcome{phase: phaseProgressing, reason: hooklinev1.ReasonApplyFailed, message: err.Error()}
		if sts == nil {
			sts = r.observeStatefulSet(ctx, d)
		}
		return ctrl.Result{}, err
	}

	out = dispatcherAvailability(d, sts)
	return ctrl.Result{}, nil
}

// reportStalled records a Warning event the first time the dispatcher
// stalls for a reason, not on every reconciliation that finds it so.
func (r *WebhookDispatcherReconciler) reportStalled(ctx context.Context, d *hooklinev1.WebhookDispatcher, out outcome) {
	c := meta.FindStatusCondition(d.Status.Conditions, hooklinev1.ConditionStalled)
	if c != nil && c.Status == metav1.ConditionTrue && c.Reason == out.reason && c.Message == out.message && c.ObservedGeneration == d.Generation {
		return
	}
	ctrl.LoggerFrom(ctx).Info("Dispatcher spec cannot work until edited", "reason", out.reason, "message", out.message)
	r.Recorder.Eventf(d, nil, corev1.EventTypeWarning, out.reason, "Validate", "%s", out.message)
}

// observeStatefulSet returns the dispatcher's StatefulSet as the cache has
// it, so status keeps describing what runs when nothing could be applied.
func (r *WebhookDispatcherReconciler) observeStatefulSet(ctx context.Context, d *hooklinev1.WebhookDispatcher) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: dispatcherObjectName(d)}, sts); err != nil {
		if !apierrors.IsNotFound(err) {
			ctrl.LoggerFrom(ctx).Error(err, "Reading the dispatcher's StatefulSet for status")
		}
		return nil
	}
	return sts
}

func (r *WebhookDispatcherReconciler) ensureFinalizer(ctx context.Context, d *hooklinev1.WebhookDispatcher) error {
	if controllerutil.ContainsFinalizer(d, dispatcherFinalizer) {
		return nil
	}
	orig := d.DeepCopy()
	controllerutil.AddFinalizer(d, dispatcherFinalizer)
	if err := r.Patch(ctx, d, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding the finalizer: %w", err)
	}
	return nil
}

// applyDispatcher applies the objects rendered for the dispatcher and
// returns the StatefulSet as the API server stored it, status included.
func (r *WebhookDispatcherReconciler) applyDispatcher(ctx context.Context, d *hooklinev1.WebhookDispatcher) (*appsv1.StatefulSet, error) {
	objs, err := renderDispatcher(d, r.DefaultImage, r.ClusterRole)
	if err != nil {
		return nil, fmt.Errorf("rendering the dispatcher: %w", err)
	}
	if err := r.replaceClusterRoleBindingIfRebound(ctx, d); err != nil {
		return nil, err
	}
	for _, cfg := range []dispatcherApplyConfiguration{
		objs.serviceAccount, objs.role, objs.roleBinding, objs.clusterRoleBinding,
		objs.service, objs.podDisruptionBudget, objs.statefulSet,
	} {
		if err := r.apply(ctx, cfg); err != nil {
			return nil, err
		}
	}
	sts, err := dispatcherConvert[appsv1.StatefulSet](objs.statefulSet)
	if err != nil {
		return nil, fmt.Errorf("reading the applied StatefulSet: %w", err)
	}
	return sts, nil
}

// replaceClusterRoleBindingIfRebound deletes the dispatcher's
// ClusterRoleBinding when it binds another ClusterRole than configured (the
// operator was reconfigured): roleRef is immutable, so applying would fail.
func (r *WebhookDispatcherReconciler) replaceClusterRoleBindingIfRebound(ctx context.Context, d *hooklinev1.WebhookDispatcher) error {
	crb := &rbacv1.ClusterRoleBinding{}
	if err := r.Get(ctx, types.NamespacedName{Name: dispatcherClusterRoleBindingName(d)}, crb); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading ClusterRoleBinding %s: %w", dispatcherClusterRoleBindingName(d), err)
	}
	if crb.RoleRef.Kind == "ClusterRole" && crb.RoleRef.Name == r.ClusterRole {
		return nil
	}
	ctrl.LoggerFrom(ctx).Info("Replacing the ClusterRoleBinding to bind another ClusterRole",
		"clusterRoleBinding", crb.Name, "from", crb.RoleRef.Name, "to", r.ClusterRole)
	if err := r.Delete(ctx, crb, client.Preconditions{UID: &crb.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting ClusterRoleBinding %s to bind another ClusterRole: %w", crb.Name, err)
	}
	return nil
}

// dispatcherApplyConfiguration is an apply configuration that can say which
// object it is, for error messages.
type dispatcherApplyConfiguration interface {
	runtime.ApplyConfiguration
	GetKind() *string
	GetName() *string
	GetNamespace() *string
}

func (r *WebhookDispatcherReconciler) apply(ctx context.Context, cfg dispatcherApplyConfiguration) error {
	if err := r.Apply(ctx, cfg, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		name := *cfg.GetName()
		if ns := cfg.GetNamespace(); ns != nil && *ns != "" {
			name = *ns + "/" + name
		}
		return fmt.Errorf("applying %s %s: %w", *cfg.GetKind(), name, err)
	}
	return nil
}

// applySecretAccess grants the dispatcher read access to exactly the
// Secrets and ConfigMaps its subscriptions use, namespace by namespace, and
// removes the grants of namespaces that no longer need them.
func (r *WebhookDispatcherReconciler) applySecretAccess(ctx context.Context, d *hooklinev1.WebhookDispatcher) error {
	byNamespace, err := r.attachedSubscriptions(ctx, d)
	if err != nil {
		return err
	}
	granted := map[string]bool{}
	for _, ns := range slices.Sorted(maps.Keys(byNamespace)) {
		admitted, err := r.admits(ctx, d, ns)
		if err != nil {
			return err
		}
		if !admitted {
			continue
		}
		access, err := r.secretAccessIn(ctx, ns, byNamespace[ns])
		if err != nil {
			return err
		}
		role, binding := renderDispatcherSecretAccess(d, ns, access)
		if err := r.apply(ctx, role); err != nil {
			return err
		}
		if err := r.apply(ctx, binding); err != nil {
			return err
		}
		granted[ns] = true
	}
	return r.deleteSecretAccess(ctx, d, func(ns string) bool { return !granted[ns] })
}

// attachedSubscriptions lists the subscriptions that resolve to d, by
// namespace.
func (r *WebhookDispatcherReconciler) attachedSubscriptions(ctx context.Context, d *hooklinev1.WebhookDispatcher) (map[string][]hooklinev1.WebhookSubscription, error) {
	var subs hooklinev1.WebhookSubscriptionList
	if err := r.List(ctx, &subs, client.MatchingFields{indexSubscriptionDispatcher: client.ObjectKeyFromObject(d).String()}); err != nil {
		return nil, fmt.Errorf("listing the subscriptions of the dispatcher: %w", err)
	}
	byNamespace := map[string][]hooklinev1.WebhookSubscription{}
	for _, s := range subs.Items {
		byNamespace[s.Namespace] = append(byNamespace[s.Namespace], s)
	}
	return byNamespace, nil
}

// admits says whether the dispatcher serves subscriptions of namespace ns.
// A namespace that is gone or terminating needs no access: nothing can be
// created in it.
func (r *WebhookDispatcherReconciler) admits(ctx context.Context, d *hooklinev1.WebhookDispatcher, ns string) (bool, error) {
	namespace := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: ns}, namespace); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	if !namespace.DeletionTimestamp.IsZero() {
		return false, nil
	}
	ok, err := admitsNamespace(d, namespace)
	if err != nil {
		return false, fmt.Errorf("checking whether the dispatcher admits namespace %s: %w", ns, err)
	}
	return ok, nil
}

// secretAccessIn resolves the WebhookSecrets that subs (in namespace ns)
// sign with to their Secrets and returns everything the subscriptions read.
// A WebhookSecret that does not exist yet is expected to use its own name;
// its creation brings the dispatcher back here if not.
func (r *WebhookDispatcherReconciler) secretAccessIn(ctx context.Context, ns string, subs []hooklinev1.WebhookSubscription) (dispatcherSecretAccess, error) {
	signing := map[string]string{}
	for _, s := range subs {
		name := s.Spec.Signing.SecretRef.Name
		if _, done := signing[name]; done {
			continue
		}
		ws := &hooklinev1.WebhookSecret{}
		switch err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ws); {
		case err == nil:
			signing[name] = dispatcherSigningSecretName(ws)
		case apierrors.IsNotFound(err):
			signing[name] = name
		default:
			return dispatcherSecretAccess{}, fmt.Errorf("reading WebhookSecret %s/%s: %w", ns, name, err)
		}
	}
	return dispatcherSecretAccessFor(subs, func(name string) string { return signing[name] }), nil
}

// deleteSecretAccess deletes the dispatcher's Secret access Roles and
// RoleBindings in the namespaces stale says no longer need them.
func (r *WebhookDispatcherReconciler) deleteSecretAccess(ctx context.Context, d *hooklinev1.WebhookDispatcher, stale func(namespace string) bool) error {
	labels := client.MatchingLabels(dispatcherRefLabels(d))
	var roles rbacv1.RoleList
	if err := r.List(ctx, &roles, labels); err != nil {
		return fmt.Errorf("listing the dispatcher's Secret access Roles: %w", err)
	}
	var bindings rbacv1.RoleBindingList
	if err := r.List(ctx, &bindings, labels); err != nil {
		return fmt.Errorf("listing the dispatcher's Secret access RoleBindings: %w", err)
	}
	var objs []client.Object
	for i := range roles.Items {
		objs = append(objs, &roles.Items[i])
	}
	for i := range bindings.Items {
		objs = append(objs, &bindings.Items[i])
	}
	for _, o := range objs {
		if !stale(o.GetNamespace()) {
			continue
		}
		if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted Secret access no longer needed", "object", klog.KObj(o))
	}
	return nil
}

// finalize deletes what the dispatcher cannot own, then releases it.
func (r *WebhookDispatcherReconciler) finalize(ctx context.Context, d *hooklinev1.WebhookDispatcher) error {
	if !controllerutil.ContainsFinalizer(d, dispatcherFinalizer) {
		return nil
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: dispatcherClusterRoleBindingName(d)}}
	if err := r.Delete(ctx, crb); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting ClusterRoleBinding %s: %w", crb.Name, err)
	}
	if err := r.deleteSecretAccess(ctx, d, func(string) bool { return true }); err != nil {
		return err
	}
	// The cache may not have seen access granted moments ago: delete it by
	// name too, wherever subscriptions still point at the dispatcher.
	byNamespace, err := r.attachedSubscriptions(ctx, d)
	if err != nil {
		return err
	}
	name := dispatcherSecretRoleName(d)
	for _, ns := range slices.Sorted(maps.Keys(byNamespace)) {
		for _, o := range []client.Object{&rbacv1.Role{}, &rbacv1.RoleBinding{}} {
			o.SetNamespace(ns)
			o.SetName(name)
			if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting %T %s/%s: %w", o, ns, name, err)
			}
		}
	}

	orig := d.DeepCopy()
	controllerutil.RemoveFinalizer(d, dispatcherFinalizer)
	if err := r.Patch(ctx, d, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing the finalizer: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Released the dispatcher's cluster-wide and cross-namespace access")
	return nil
}

func (r *WebhookDispatcherReconciler) dispatcherOfSubscription(_ context.Context, o client.Object) []reconcile.Request {
	sub, ok := o.(*hooklinev1.WebhookSubscription)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: dispatcherFor(sub, r.DefaultDispatcher)}}
}

func (r *WebhookDispatcherReconciler) dispatchersOfWebhookSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var subs hooklinev1.WebhookSubscriptionList
	if err := r.List(ctx, &subs, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSubscriptionSecret: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the subscriptions of a WebhookSecret", "webhookSecret", klog.KObj(o))
		return nil
	}
	return r.dispatchersOf(subs.Items)
}

func (r *WebhookDispatcherReconciler) dispatchersOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var subs hooklinev1.WebhookSubscriptionList
	if err := r.List(ctx, &subs, client.InNamespace(o.GetName())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the subscriptions of a namespace", "namespace", o.GetName())
		return nil
	}
	return r.dispatchersOf(subs.Items)
}

// dispatchersOf is the distinct dispatchers of subs, sorted.
func (r *WebhookDispatcherReconciler) dispatchersOf(subs []hooklinev1.WebhookSubscription) []reconcile.Request {
	var reqs []reconcile.Request
	for i := range subs {
		req := reconcile.Request{NamespacedName: dispatcherFor(&subs[i], r.DefaultDispatcher)}
		if !slices.Contains(reqs, req) {
			reqs = append(reqs, req)
		}
	}
	return reqs
}

func dispatcherOfLabels(_ context.Context, o client.Object) []reconcile.Request {
	key, ok := dispatcherFromLabels(o.GetLabels())
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: key}}
}

// dispatcherSigningSecretMoved passes WebhookSecret updates that move its keys
// to another Secret, the only change the dispatcher's RBAC follows.
var dispatcherSigningSecretMoved = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		oldWS, okOld := e.ObjectOld.(*hooklinev1.WebhookSecret)
		newWS, okNew := e.ObjectNew.(*hooklinev1.WebhookSecret)
		return !okOld || !okNew || dispatcherSigningSecretName(oldWS) != dispatcherSigningSecretName(newWS)
	},
}
