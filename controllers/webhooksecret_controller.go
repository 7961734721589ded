package controllers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// The Secret a WebhookSecret owns; its layout is part of the API
// (hooklinev1.SecretKey*, SigningKeySecretType and the Secret annotations),
// so that the Secret is the whole truth and a lost status never causes a
// rotation.
const (
	webhookSecretType              = corev1.SecretType(hooklinev1.SigningKeySecretType)
	annotationKeyCreatedAt         = hooklinev1.AnnotationSigningKeyCreatedAt
	annotationPreviousKeyCreatedAt = hooklinev1.AnnotationPreviousKeyCreatedAt
	annotationPreviousKeyExpiresAt = hooklinev1.AnnotationPreviousKeyExpiresAt
	annotationLastRotateRequest    = hooklinev1.AnnotationLastRotateRequest

	labelManagedBy     = "app.kubernetes.io/managed-by"
	labelWebhookSecret = "hookline.dev/webhooksecret"

	// indexWebhookSecretTarget indexes WebhookSecrets by the name of the
	// Secret they write.
	indexWebhookSecretTarget = ".webhooksecret.secretName"
)

// errStaleSecret says someone else wrote the Secret between this
// reconciliation's read and its write; the next one reads it again.
var errStaleSecret = errors.New("the Secret changed since it was read")

// WebhookSecretReconciler reconciles WebhookSecrets: it generates signing
// keys into a Secret it owns, rotates them and reports key ids in status.
type WebhookSecretReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// APIReader reads from the API server, bypassing the cache: Secret
	// contents are never cached (the watches keep metadata only).
	APIReader client.Reader
	// Clock decides every rotation and expiry; tests use a fake one.
	Clock clock.WithTicker

	// stalls keeps a Stalled WebhookSecret to one Warning per problem.
	stalls stallWarnings
}

// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksecrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksecrets/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksecrets/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler and the index it needs.
func (r *WebhookSecretReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &hooklinev1.WebhookSecret{}, indexWebhookSecretTarget,
		func(o client.Object) []string { return []string{signingSecretName(o.(*hooklinev1.WebhookSecret))} }); err != nil {
		return fmt.Errorf("indexing WebhookSecrets by Secret name: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.WebhookSecret{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Secrets are watched by their metadata only, so that no key (nor
		// any other Secret's data) enters the manager's cache; Reconcile
		// reads the one Secret it needs from the API server.
		//
		// A deleted or edited Secret is repaired at once.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// A Secret nobody (or another WebhookSecret) controls blocks the
		// WebhookSecrets that target its name; they resume when it goes.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.webhookSecretsTargeting), builder.OnlyMetadata).
		Complete(r)
}

// webhookSecretsTargeting maps a Secret to the WebhookSecrets that write a
// Secret of its name.
func (r *WebhookSecretReconciler) webhookSecretsTargeting(ctx context.Context, o client.Object) []reconcile.Request {
	return requestsForList(ctx, r.Client, &hooklinev1.WebhookSecretList{},
		client.InNamespace(o.GetNamespace()), client.MatchingFields{indexWebhookSecretTarget: o.GetName()})
}

// Reconcile brings the WebhookSecret's Secret to the keys its spec, the
// rotate annotation and the clock call for, and reports them in status.
func (r *WebhookSecretReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	ws := &hooklinev1.WebhookSecret{}
	if err := r.Get(ctx, req.NamespacedName, ws); err != nil {
		if apierrors.IsNotFound(err) {
			r.stalls.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("getting WebhookSecret %s: %w", req.NamespacedName, err)
	}
	if !ws.DeletionTimestamp.IsZero() {
		// The garbage collector removes the Secret through its owner
		// reference; there is nothing to clean up.
		return ctrl.Result{}, nil
	}
	// Times are stored with second precision; truncating keeps what is
	// decided equal to what is recorded.
	now := r.Clock.Now().UTC().Truncate(time.Second)
	obs := webhookSecretObservation{secretName: signingSecretName(ws)}
	writeStatus := true
	// What a Stalled outcome's Warning names besides the WebhookSecret:
	// the action that cannot be taken and the object in the way, if any.
	stallAction, stallRelated := "Reconcile", runtime.Object(nil)
	defer func() {
		if !writeStatus {
			return
		}
		st := webhookSecretStatus(ws, obs, now)
		if err := applyStatus(ctx, r.Client, ws, &st); err != nil {
			retErr = errors.Join(retErr, err)
		}
		// The same problem found again (every change of a conflicting
		// Secret brings one) is not told again.
		if r.stalls.due(req.NamespacedName, ws.Status.Conditions, obs.out) {
			r.Recorder.Eventf(ws, stallRelated, corev1.EventTypeWarning, obs.out.reason, stallAction, "%s", obs.out.message)
		}
	}()

	secret, conflict, err := r.observeSecret(ctx, ws, &obs, now)
	if err != nil {
		obs.out = errorOutcome(err)
		return ctrl.Result{}, err
	}
	if conflict {
		obs.out = secretConflictOutcome(obs.secretName)
		stallAction, stallRelated = "ApplySecret", secret
		return ctrl.Result{}, nil
	}

	p, err := policyFor(ws.Spec)
	if err != nil {
		obs.out = invalidSpecOutcome(err)
		stallAction = "Validate"
		return ctrl.Result{}, nil
	}
	obs.interval = p.interval

	if secret != nil && !secret.DeletionTimestamp.IsZero() {
		// Keys written now would go with it; its deletion brings this
		// WebhookSecret back to create a new one.
		obs.out = secretDeletingOutcome(obs.secretName)
		return ctrl.Result{}, nil
	}

	next, err := r.reconcileKeys(ctx, ws, secret, &obs, p, now)
	switch {
	case errors.Is(err, errStaleSecret):
		// Nothing is wrong that status should show: someone wrote the
		// Secret since it was read, and what was decided from the older
		// version is not written.
		log.V(1).Info("Secret changed since it was read, retrying", "secret", obs.secretName)
		writeStatus = false
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case err != nil:
		obs.out = errorOutcome(err)
		return ctrl.Result{}, err
	}
	obs.out = readyOutcome(obs.keys)
	if !next.IsZero() {
		result.RequeueAfter = max(next.Sub(now), time.Second)
	}
	return result, nil
}

// observeSecret reads the target Secret from the API server (the manager
// caches Secrets' metadata only), and the keys it holds into obs. It
// returns the Secret (nil if there is none) and whether someone other than
// this WebhookSecret controls it; such a Secret is never read further nor
// written, and is returned without its data.
func (r *WebhookSecretReconciler) observeSecret(ctx context.Context, ws *hooklinev1.WebhookSecret, obs *webhookSecretObservation, now time.Time) (*corev1.Secret, bool, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ws.Namespace, Name: obs.secretName}, secret)
	switch {
	case apierrors.IsNotFound(err):
		obs.observed = true
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s: %w", obs.secretName, err)
	}
	obs.observed = true
	if !metav1.IsControlledBy(secret, ws) {
		secret.Data, secret.StringData = nil, nil
		return secret, true, nil
	}
	obs.keys = keysFromSecret(secret, now)
	return secret, false, nil
}

// reconcileKeys carries out the rotation decision for now: it generates a
// key if one is due, writes the Secret, records events, and leaves the keys
// the Secret now holds in obs. It returns when the keys next need
// attention.
func (r *WebhookSecretReconciler) reconcileKeys(ctx context.Context, ws *hooklinev1.WebhookSecret, secret *corev1.Secret,
	obs *webhookSecretObservation, p rotationPolicy, now time.Time) (time.Time, error) {
	request := ws.Annotations[hooklinev1.RotateAnnotation]
	held := obs.keys
	d := rotationDecision(now, p, held, request)
	var newKey keys.Key
	if d.rotate() {
		var err error
		if newKey, err = keys.Generate(p.algorithm, rand.Reader); err != nil {
			return time.Time{}, fmt.Errorf("generating a signing key: %w", err)
		}
	}
	want := nextKeys(now, p, held, d, newKey, request)
	if err := r.writeSecret(ctx, ws, secret, obs.secretName, want); err != nil {
		return time.Time{}, err
	}
	obs.keys = want
	r.recordKeyEvents(ctx, ws, obs.secretName, held, want, d)
	return d.next, nil
}

// writeSecret server-side applies the Secret holding s; existing is the
// Secret as read, nil if there was none. The apply carries the uid and
// resourceVersion that were read, so that keys derived from an older Secret
// never overwrite what someone else (another controller replica during a
// leader handover, a user) wrote since, nor bring back a Secret someone
// deleted since. A Secret that did not exist is
// created first, bare, so that a Secret someone else has just created is
// never taken over; the keys and all fields that may change later are then
// applied. A Secret of another type than ours is deleted first and
// recreated, since a Secret's type cannot change.
func (r *WebhookSecretReconciler) writeSecret(ctx context.Context, ws *hooklinev1.WebhookSecret, existing *corev1.Secret, name string, s keyState) error {
	if existing != nil && existing.Type != webhookSecretType {
		if err := r.Delete(ctx, existing, client.Preconditions{UID: &existing.UID, ResourceVersion: &existing.ResourceVersion}); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return errStaleSecret
			}
			return fmt.Errorf("deleting Secret %s of type %s to recreate it: %w", name, existing.Type, err)
		}
		existing = nil
	}
	var uid types.UID
	var resourceVersion string
	if existing != nil {
		uid, resourceVersion = existing.UID, existing.ResourceVersion
	} else {
		bare := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ws.Namespace, Name: name, OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(ws, hooklinev1.GroupVersion.WithKind("WebhookSecret")),
			}},
			Type: webhookSecretType,
		}
		if err := r.Create(ctx, bare, client.FieldOwner(FieldManager)); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return errStaleSecret
			}
			return fmt.Errorf("creating Secret %s: %w", name, err)
		}
		uid, resourceVersion = bare.UID, bare.ResourceVersion
	}
	// The uid keeps the apply from creating a Secret deleted since it was
	// read, which the resourceVersion alone would not.
	ac := secretFor(ws, name, s).WithUID(uid).WithResourceVersion(resourceVersion)
	if err := r.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsConflict(err) {
			return errStaleSecret
		}
		return fmt.Errorf("applying Secret %s: %w", name, err)
	}
	return nil
}

// recordKeyEvents tells users, through Events and the log, what changed
// between the keys held before and after d. Only key ids appear.
func (r *WebhookSecretReconciler) recordKeyEvents(ctx context.Context, ws *hooklinev1.WebhookSecret, secretName string, before, after keyState, d decision) {
	log := ctrl.LoggerFrom(ctx)
	if d.expirePrevious {
		log.Info("Removed expired previous signing key", "secret", secretName, "key", before.previous.ID())
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, hooklinev1.ReasonKeyExpired, "ExpireKey",
			"Removed previous signing key %s from Secret %s: its overlap window ended", before.previous.ID(), secretName)
	}
	switch d.reason {
	case rotateNone:
		return
	case rotateCreate:
		log.Info("Created signing key", "secret", secretName, "key", after.current.ID(), "algorithm", after.current.Algorithm())
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, hooklinev1.ReasonKeyCreated, "CreateKey",
			"Created signing key %s (%s) in Secret %s", after.current.ID(), after.current.Algorithm(), secretName)
		return
	}
	from := before.current.ID()
	switch {
	case from != "":
	case before.damaged:
		from = "an unreadable key"
	default:
		from = "no key"
	}
	note := fmt.Sprintf("Rotated signing key in Secret %s from %s to %s (%s) because %s", secretName, from, after.current.ID(), after.current.Algorithm(), d.why)
	switch {
	case before.current.IsZero():
	case after.previous.ID() == before.current.ID():
		note += fmt.Sprintf("; %s keeps signing until %s", from, after.previousExpiresAt.Format(time.RFC3339))
	default:
		note += fmt.Sprintf("; the overlap is 0s, so %s was removed", from)
	}
	if !d.expirePrevious && !before.previous.IsZero() && after.previous.ID() != before.previous.ID() {
		note += fmt.Sprintf("; %s was removed before the end of its overlap window", before.previous.ID())
	}
	log.Info("Rotated signing key", "secret", secretName, "from", from, "to", after.current.ID(), "why", d.why)
	r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, hooklinev1.ReasonKeyRotated, "RotateKey", "%s", note)
}

// keysFromSecret reads the keys a Secret holds. A current key that does not
// parse is reported as damaged; a previous key that does not parse is
// dropped, since it cannot sign. A missing or unreadable creation time is
// taken as now (so losing it delays a rotation rather than forcing one), as
// is one in the future; a missing expiry is left zero for the policy to
// settle. A Secret of another type than ours is noted, to be replaced.
func keysFromSecret(secret *corev1.Secret, now time.Time) keyState {
	var s keyState
	if secret == nil {
		return s
	}
	readTime := func(key string) time.Time {
		t, err := time.Parse(time.RFC3339, secret.Annotations[key])
		if err != nil {
			return time.Time{}
		}
		return t.UTC()
	}
	createdAt := func(key string) time.Time {
		t := readTime(key)
		if t.IsZero() || t.After(now) {
			return now
		}
		return t
	}
	if raw, ok := secret.Data[hooklinev1.SecretKeySigningKey]; ok {
		k, err := keys.Parse(string(raw))
		if err != nil {
			s.damaged = true
		} else {
			s.current, s.currentCreatedAt = k, createdAt(annotationKeyCreatedAt)
		}
	}
	if raw, ok := secret.Data[hooklinev1.SecretKeyPreviousSigningKey]; ok {
		if k, err := keys.Parse(string(raw)); err == nil && k.ID() != s.current.ID() {
			s.previous, s.previousCreatedAt = k, createdAt(annotationPreviousKeyCreatedAt)
			s.previousExpiresAt = readTime(annotationPreviousKeyExpiresAt)
		}
	}
	s.lastRotateRequest = secret.Annotations[annotationLastRotateRequest]
	if secret.Type != webhookSecretType {
		s.wrongType = string(secret.Type)
		if s.wrongType == "" {
			s.wrongType = string(corev1.SecretTypeOpaque)
		}
	}
	return s
}

// secretFor renders the Secret that holds s for ws, whole, for server-side
// apply: keys left out of it are removed from the Secret.
func secretFor(ws *hooklinev1.WebhookSecret, name string, s keyState) *corev1ac.SecretApplyConfiguration {
	data := map[string][]byte{}
	annotations := map[string]string{}
	if !s.current.IsZero() {
		data[hooklinev1.SecretKeySigningKey] = []byte(s.current.Encoded())
		annotations[annotationKeyCreatedAt] = s.currentCreatedAt.UTC().Format(time.RFC3339)
		if pub := s.current.PublicKey(); pub != "" {
			data[hooklinev1.SecretKeyPublicKey] = []byte(pub)
		}
	}
	if !s.previous.IsZero() {
		data[hooklinev1.SecretKeyPreviousSigningKey] = []byte(s.previous.Encoded())
		annotations[annotationPreviousKeyCreatedAt] = s.previousCreatedAt.UTC().Format(time.RFC3339)
		annotations[annotationPreviousKeyExpiresAt] = s.previousExpiresAt.UTC().Format(time.RFC3339)
		if pub := s.previous.PublicKey(); pub != "" {
			data[hooklinev1.SecretKeyPreviousPublicKey] = []byte(pub)
		}
	}
	if s.lastRotateRequest != "" {
		annotations[annotationLastRotateRequest] = s.lastRotateRequest
	}
	labels := map[string]string{labelManagedBy: "hookline"}
	// Names may be longer than a label value can be; the owner reference
	// still ties such a Secret to its WebhookSecret.
	if len(validation.IsValidLabelValue(ws.Name)) == 0 {
		labels[labelWebhookSecret] = ws.Name
	}
	return corev1ac.Secret(name, ws.Namespace).
		WithType(webhookSecretType).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(hooklinev1.GroupVersion.String()).
			WithKind("WebhookSecret").
			WithName(ws.Name).
			WithUID(ws.UID).
			WithController(true).
			WithBlockOwnerDeletion(true)).
		WithData(data)
}
