package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
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

// Objects are created and changed with server-side apply (create and patch),
// never updated or deleted but for the RBAC objects the controller cleans up
// itself; the finalizer is added and removed with a patch. The manager creates
// Roles granting get, list and watch on named Secrets and ConfigMaps, which
// RBAC allows only to a holder of those permissions (it holds them for itself
// anyway); it binds the dispatcher ClusterRoles, cluster-wide and in the
// dispatcher's namespace (dispatcherLocalClusterRole), with the bind verb
// instead of holding what they grant. Leases are only read: each running dispatcher instance keeps
// one (hooklinev1.LabelLeaseRole), and the live ones make the dispatcher
// Ready.
//
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers/status,verbs=get;patch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers/finalizers,verbs=update
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksubscriptions;webhooksecrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterrolebindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=hookline-dispatcher;hookline-dispatcher-local
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch

// WebhookDispatcherReconciler renders each WebhookDispatcher into a
// StatefulSet, Service, ServiceAccount, RBAC and PodDisruptionBudget,
// server-side applied, and reports the address and availability: the
// instances that announce themselves with a live Lease.
type WebhookDispatcherReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Clock    clock.WithTicker
	// DefaultImage is the dispatcher image unless the spec overrides it.
	DefaultImage string
	// ClusterRole is bound to every dispatcher's ServiceAccount
	// cluster-wide; ClusterRole+"-local" is bound to it in the dispatcher's
	// own namespace (dispatcherLocalClusterRole).
	ClusterRole string
	// DefaultDispatcher serves subscriptions without dispatcherRef.
	DefaultDispatcher types.NamespacedName

	// stalls remembers which Stalled outcomes got their Warning event.
	stalls stallWarnings
}

// SetupWithManager registers the reconciler and its watches.
func (r *WebhookDispatcherReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// The rendered objects find their dispatcher by name (or label) rather
	// than by owner reference: an object in the way of one the dispatcher
	// renders has no owner reference, and its deletion must bring the
	// Stalled dispatcher back.
	byName := handler.EnqueueRequestsFromMapFunc(dispatchersOfObject)
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.WebhookDispatcher{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&appsv1.StatefulSet{}, byName).
		Watches(&corev1.Service{}, byName).
		Watches(&corev1.ServiceAccount{}, byName).
		Watches(&policyv1.PodDisruptionBudget{}, byName).
		Watches(&rbacv1.Role{}, byName).
		Watches(&rbacv1.RoleBinding{}, byName).
		Watches(&rbacv1.ClusterRoleBinding{}, byName).
		// The Secrets a dispatcher may read follow its subscriptions'
		// specs; their status, which the dispatcher writes often, does not
		// matter here.
		Watches(&hooklinev1.WebhookSubscription{},
			handler.EnqueueRequestsFromMapFunc(r.dispatcherOfSubscription),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&hooklinev1.WebhookSecret{},
			handler.EnqueueRequestsFromMapFunc(r.dispatchersOfWebhookSecret),
			builder.WithPredicates(webhookSecretAppearsOrGoes)).
		// Admission by namespace selector follows namespace labels.
		Watches(&corev1.Namespace{},
			handler.EnqueueRequestsFromMapFunc(r.dispatchersOfNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// Instances come and go with their Leases. Renewals, every few
		// seconds per instance, change nothing; the expiry of a Lease no
		// one renews is caught by the requeue Reconcile asks for.
		Watches(&coordinationv1.Lease{},
			handler.EnqueueRequestsFromMapFunc(dispatcherOfInstanceLease),
			builder.WithPredicates(r.instanceLeaseNews())).
		Complete(r)
}

// instanceLeaseNews passes the events of dispatcher instance Leases that
// may change how many instances run: a Lease created or deleted, and an
// update to a Lease that had expired (a revived instance) or that moves it
// to another dispatcher. The renewal of a live Lease is not news.
func (r *WebhookDispatcherReconciler) instanceLeaseNews() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isInstanceLease(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isInstanceLease(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return isInstanceLease(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !isInstanceLease(e.ObjectOld) && !isInstanceLease(e.ObjectNew) {
				return false
			}
			if e.ObjectOld.GetLabels()[hooklinev1.LabelDispatcher] != e.ObjectNew.GetLabels()[hooklinev1.LabelDispatcher] ||
				isInstanceLease(e.ObjectOld) != isInstanceLease(e.ObjectNew) {
				return true
			}
			old, ok := e.ObjectOld.(*coordinationv1.Lease)
			if !ok {
				return true
			}
			expiry, ok := instanceLeaseExpiry(old)
			return !ok || !expiry.After(r.Clock.Now())
		},
	}
}

// isInstanceLease says whether o is labelled as a dispatcher instance Lease.
func isInstanceLease(o client.Object) bool {
	l := o.GetLabels()
	return l[hooklinev1.LabelLeaseRole] == hooklinev1.LeaseRoleInstance && l[hooklinev1.LabelDispatcher] != ""
}

// dispatcherOfInstanceLease maps an instance Lease to the dispatcher of its
// namespace that its label names.
func dispatcherOfInstanceLease(_ context.Context, o client.Object) []reconcile.Request {
	if !isInstanceLease(o) {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetLabels()[hooklinev1.LabelDispatcher]}}}
}

// Reconcile applies everything the dispatcher needs and reports whether its
// instances are available.
func (r *WebhookDispatcherReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	d := &hooklinev1.WebhookDispatcher{}
	if err := r.Get(ctx, req.NamespacedName, d); err != nil {
		if apierrors.IsNotFound(err) {
			r.stalls.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	var (
		out outcome
		// sts is the StatefulSet as the API server returned it; nil while
		// there is none or nothing was applied.
		sts *appsv1.StatefulSet
		// related is the object a Stalled outcome is about, if not d.
		related runtime.Object
		// released: the finalizer is gone and so, possibly, the object.
		released bool
		// instances is nil until the instance Leases were read.
		instances *dispatcherInstances
	)
	defer func() {
		if released {
			r.stalls.forget(req.NamespacedName)
			return
		}
		if r.stalls.due(req.NamespacedName, d.Status.Conditions, out) {
			ctrl.LoggerFrom(ctx).Info("Dispatcher stalled", "reason", out.reason, "message", out.message)
			r.Recorder.Eventf(d, related, corev1.EventTypeWarning, out.reason, "Reconcile", "%s", out.message)
		}
		if sts == nil {
			// Status keeps describing what runs when nothing was applied.
			sts = r.observeStatefulSet(ctx, d)
		}
		if instances == nil {
			in, err := r.instances(ctx, d)
			if err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "Counting the dispatcher's instances for status")
			}
			instances = &in
		}
		st := dispatcherStatus(d, sts, *instances, out, metav1.NewTime(r.Clock.Now()))
		// A dispatcher deleted meanwhile has no status left to write.
		if err := applyStatus(ctx, r.Client, d, &st); client.IgnoreNotFound(err) != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if !d.DeletionTimestamp.IsZero() {
		if err := r.finalize(ctx, d); err != nil {
			out = errorOutcome(err)
			return ctrl.Result{}, err
		}
		released = true
		return ctrl.Result{}, nil
	}

	if msg, ok := validDispatcherSpec(d); !ok {
		out = outcome{phase: phaseStalled, reason: hooklinev1.ReasonInvalidSpec, message: msg}
		return ctrl.Result{}, nil
	}

	objs, err := renderDispatcher(d, r.DefaultImage, r.ClusterRole)
	if err != nil {
		err = fmt.Errorf("rendering the dispatcher: %w", err)
		out = errorOutcome(err)
		return ctrl.Result{}, err
	}
	// Nothing is applied, not even the finalizer, while an object of a
	// rendered name is someone else's.
	existing, conflict, err := r.existingObjects(ctx, d, objs.all(), false)
	if err != nil {
		out = errorOutcome(err)
		return ctrl.Result{}, err
	}
	if conflict != nil {
		out, related = conflict.outcome(), conflict.obj
		return ctrl.Result{}, nil
	}

	if err := r.ensureFinalizer(ctx, d); err != nil {
		out = errorOutcome(err)
		return ctrl.Result{}, err
	}

	if sts, err = r.applyDispatcher(ctx, d, objs, existing); err == nil {
		conflict, err = r.applySecretAccess(ctx, d)
	}
	var refused *dispatcherRefusedError
	switch {
	case errors.As(err, &refused):
		// Retrying cannot help: the rendered object breaks a rule of its
		// kind, typically an immutable field the spec now changes.
		out = outcome{phase: phaseStalled, reason: hooklinev1.ReasonInvalidSpec, message: refused.message}
		return ctrl.Result{}, nil
	case err != nil:
		out = outcome{phase: phaseProgressing, reason: hooklinev1.ReasonApplyFailed, message: err.Error()}
		return ctrl.Result{}, err
	case conflict != nil:
		out, related = conflict.outcome(), conflict.obj
		return ctrl.Result{}, nil
	}

	in, err := r.instances(ctx, d)
	if err != nil {
		out = errorOutcome(err)
		return ctrl.Result{}, err
	}
	instances = &in
	out = dispatcherAvailability(d, sts, in)
	// A crashed instance's Lease just expires, with no event to tell:
	// look again when the first live one would (not sooner than a second
	// from now, so an expiry moments away does not spin the queue).
	if !in.nextExpiry.IsZero() {
		result.RequeueAfter = max(in.nextExpiry.Sub(r.Clock.Now()), time.Second)
	}
	return result, nil
}

// instances counts the dispatcher's live instance Leases, as the cache has
// them.
func (r *WebhookDispatcherReconciler) instances(ctx context.Context, d *hooklinev1.WebhookDispatcher) (dispatcherInstances, error) {
	var leases coordinationv1.LeaseList
	if err := r.List(ctx, &leases, client.InNamespace(d.Namespace), client.MatchingLabels{
		hooklinev1.LabelDispatcher: d.Name, hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance,
	}); err != nil {
		return dispatcherInstances{}, fmt.Errorf("listing the dispatcher's instance Leases: %w", err)
	}
	return liveDispatcherInstances(d, leases.Items, r.Clock.Now()), nil
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
	if managed, _ := dispatcherManages(d, sts, false); !managed {
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

// dispatcherObjectConflict is an existing object, of the name of one the
// dispatcher renders, that is not the dispatcher's.
type dispatcherObjectConflict struct {
	kind string
	obj  client.Object
	// previous: controlled by an earlier dispatcher of the same name.
	previous bool
}

func (c *dispatcherObjectConflict) outcome() outcome {
	return dispatcherConflictOutcome(c.kind, klog.KObj(c.obj).String(), c.previous)
}

// existingObjects reads, from the cache, the objects of the names cfgs
// render and returns those that are the dispatcher's, or the first one in
// the way. byLabels says how the dispatcher marks its objects
// (dispatcherManages); cluster-scoped objects are always marked by labels.
func (r *WebhookDispatcherReconciler) existingObjects(ctx context.Context, d *hooklinev1.WebhookDispatcher, cfgs []dispatcherApplyConfiguration, byLabels bool) ([]client.Object, *dispatcherObjectConflict, error) {
	var existing []client.Object
	for _, cfg := range cfgs {
		gvk := schema.FromAPIVersionAndKind(*cfg.GetAPIVersion(), *cfg.GetKind())
		robj, err := r.Scheme().New(gvk)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, dispatcherConfigName(cfg), err)
		}
		obj := robj.(client.Object)
		key := types.NamespacedName{Name: *cfg.GetName()}
		if ns := cfg.GetNamespace(); ns != nil {
			key.Namespace = *ns
		}
		if err := r.Get(ctx, key, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, dispatcherConfigName(cfg), err)
		}
		managed, previous := dispatcherManages(d, obj, byLabels || key.Namespace == "")
		if !managed {
			return nil, &dispatcherObjectConflict{kind: gvk.Kind, obj: obj, previous: previous}, nil
		}
		existing = append(existing, obj)
	}
	return existing, nil, nil
}

// applyDispatcher applies the objects rendered for the dispatcher, existing
// being those of them that exist already, and returns the StatefulSet as the
// API server stored it, status included.
func (r *WebhookDispatcherReconciler) applyDispatcher(ctx context.Context, d *hooklinev1.WebhookDispatcher, objs dispatcherObjects, existing []client.Object) (*appsv1.StatefulSet, error) {
	if err := r.replaceRebound(ctx, objs, existing); err != nil {
		return nil, err
	}
	for _, cfg := range objs.all() {
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

// replaceRebound deletes the dispatcher's bindings (among existing) that
// bind another role than rendered, as after the operator was reconfigured
// with another ClusterRole: roleRef is immutable, so applying over them
// would fail.
func (r *WebhookDispatcherReconciler) replaceRebound(ctx context.Context, objs dispatcherObjects, existing []client.Object) error {
	for _, o := range existing {
		var (
			have rbacv1.RoleRef
			want *rbacv1ac.RoleRefApplyConfiguration
		)
		switch b := o.(type) {
		case *rbacv1.ClusterRoleBinding:
			have, want = b.RoleRef, objs.clusterRoleBinding.RoleRef
		case *rbacv1.RoleBinding:
			have, want = b.RoleRef, objs.roleBinding.RoleRef
		default:
			continue
		}
		if have.Kind == *want.Kind && have.Name == *want.Name {
			continue
		}
		ctrl.LoggerFrom(ctx).Info("Replacing a binding to bind another role",
			"binding", klog.KObj(o), "from", have.Kind+"/"+have.Name, "to", *want.Kind+"/"+*want.Name)
		uid := o.GetUID()
		if err := r.Delete(ctx, o, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s to bind another role: %w", o, klog.KObj(o), err)
		}
	}
	return nil
}

// dispatcherApplyConfiguration is an apply configuration that can say which
// object it is.
type dispatcherApplyConfiguration interface {
	runtime.ApplyConfiguration
	GetAPIVersion() *string
	GetKind() *string
	GetName() *string
	GetNamespace() *string
}

// dispatcherConfigName is "namespace/name" of cfg, or its name when cluster
// scoped.
func dispatcherConfigName(cfg dispatcherApplyConfiguration) string {
	if ns := cfg.GetNamespace(); ns != nil && *ns != "" {
		return *ns + "/" + *cfg.GetName()
	}
	return *cfg.GetName()
}

// dispatcherRefusedError is an apply the API server refused as invalid:
// retrying cannot help.
type dispatcherRefusedError struct {
	message string
	err     error
}

func (e *dispatcherRefusedError) Error() string { return e.message }
func (e *dispatcherRefusedError) Unwrap() error { return e.err }

func (r *WebhookDispatcherReconciler) apply(ctx context.Context, cfg dispatcherApplyConfiguration) error {
	err := r.Apply(ctx, cfg, client.FieldOwner(FieldManager), client.ForceOwnership)
	if err == nil {
		return nil
	}
	if apierrors.IsInvalid(err) {
		var causes []metav1.StatusCause
		if status := apierrors.APIStatus(nil); errors.As(err, &status) && status.Status().Details != nil {
			causes = status.Status().Details.Causes
		}
		return &dispatcherRefusedError{message: dispatcherRefusedMessage(*cfg.GetKind(), dispatcherConfigName(cfg), causes), err: err}
	}
	return fmt.Errorf("applying %s %s: %w", *cfg.GetKind(), dispatcherConfigName(cfg), err)
}

// applySecretAccess grants the dispatcher read access to exactly the
// Secrets and ConfigMaps its subscriptions use, namespace by namespace, and
// removes the grants of namespaces that no longer need them. A namespace
// where another object holds the name of the grant gets none, and the first
// such object is returned.
func (r *WebhookDispatcherReconciler) applySecretAccess(ctx context.Context, d *hooklinev1.WebhookDispatcher) (*dispatcherObjectConflict, error) {
	byNamespace, err := r.attachedSubscriptions(ctx, d)
	if err != nil {
		return nil, err
	}
	var firstConflict *dispatcherObjectConflict
	granted := map[string]bool{}
	for _, ns := range slices.Sorted(maps.Keys(byNamespace)) {
		admitted, err := r.admits(ctx, d, ns)
		if err != nil {
			return nil, err
		}
		if !admitted {
			continue
		}
		access, err := r.secretAccessIn(ctx, ns, byNamespace[ns])
		if err != nil {
			return nil, err
		}
		role, binding := renderDispatcherSecretAccess(d, ns, access)
		_, conflict, err := r.existingObjects(ctx, d, []dispatcherApplyConfiguration{role, binding}, true)
		if err != nil {
			return nil, err
		}
		if conflict != nil {
			if firstConflict == nil {
				firstConflict = conflict
			}
			continue
		}
		if err := r.apply(ctx, role); err != nil {
			return nil, err
		}
		if err := r.apply(ctx, binding); err != nil {
			return nil, err
		}
		granted[ns] = true
	}
	name := dispatcherSecretRoleName(d)
	err = r.deleteSecretAccess(ctx, d, func(o client.Object) bool { return !granted[o.GetNamespace()] || o.GetName() != name })
	return firstConflict, err
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
			signing[name] = signingSecretName(ws)
		case apierrors.IsNotFound(err):
			signing[name] = name
		default:
			return dispatcherSecretAccess{}, fmt.Errorf("reading WebhookSecret %s/%s: %w", ns, name, err)
		}
	}
	return dispatcherSecretAccessFor(subs, func(name string) string { return signing[name] }), nil
}

// deleteSecretAccess deletes the dispatcher's Secret access Roles and
// RoleBindings that stale says are no longer needed.
func (r *WebhookDispatcherReconciler) deleteSecretAccess(ctx context.Context, d *hooklinev1.WebhookDispatcher, stale func(client.Object) bool) error {
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
		if !stale(o) {
			continue
		}
		if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s: %w", o, klog.KObj(o), err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted Secret access no longer needed", "object", klog.KObj(o))
	}
	return nil
}

// deleteIfLabelled deletes obj (named, empty otherwise) unless the cache
// holds an object of its name that is not labelled as the dispatcher's. One
// the cache has not seen yet (created moments ago) is deleted by name.
func (r *WebhookDispatcherReconciler) deleteIfLabelled(ctx context.Context, d *hooklinev1.WebhookDispatcher, obj client.Object) error {
	key := client.ObjectKeyFromObject(obj)
	switch err := r.Get(ctx, key, obj); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading %T %s: %w", obj, key, err)
	default:
		if managed, _ := dispatcherManages(d, obj, true); !managed {
			return nil
		}
	}
	if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %T %s: %w", obj, key, err)
	}
	return nil
}

// finalize deletes what the dispatcher cannot own, then releases it.
func (r *WebhookDispatcherReconciler) finalize(ctx context.Context, d *hooklinev1.WebhookDispatcher) error {
	if !controllerutil.ContainsFinalizer(d, dispatcherFinalizer) {
		return nil
	}
	crb := &rbacv1.ClusterRoleBinding{}
	crb.Name = dispatcherClusterRoleBindingName(d)
	if err := r.deleteIfLabelled(ctx, d, crb); err != nil {
		return err
	}
	if err := r.deleteSecretAccess(ctx, d, func(client.Object) bool { return true }); err != nil {
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
			if err := r.deleteIfLabelled(ctx, d, o); err != nil {
				return err
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

// dispatchersOfWebhookSecret and dispatchersOfNamespace list subscriptions
// and requeue their dispatchers, not the subscriptions: requestsForList,
// which requeues what it lists, does not fit them.
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

// dispatchersOf is the distinct dispatchers of subs.
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

// dispatchersOfObject maps an object of a kind the dispatcher renders to the
// dispatchers it may belong to or stand in the way of (dispatchersNaming).
func dispatchersOfObject(_ context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, key := range dispatchersNaming(o) {
		reqs = append(reqs, reconcile.Request{NamespacedName: key})
	}
	return reqs
}

// webhookSecretAppearsOrGoes passes WebhookSecrets being created or
// deleted, the only changes that move the Secret the dispatcher reads:
// spec.secretName is immutable.
var webhookSecretAppearsOrGoes = predicate.Funcs{
	UpdateFunc: func(event.UpdateEvent) bool { return false },
}
