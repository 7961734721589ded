package dispatcher

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// A watch of a referenced Secret or ConfigMap is forbidden for a while
// after a subscription is applied: the dispatcher is granted each object by
// name, and the grant (written by the manager once the admission policy let
// the subscription in) reaches the API server's authorizer a moment later.
// The informer retries on its own; only a refusal lasting
// watchRefusalTolerated is worth an error in the log. Refusals further apart
// than watchRefusalGap are separate episodes.
const (
	watchRefusalTolerated = 30 * time.Second
	watchRefusalGap       = 2 * time.Minute
)

// quietWatchErrors is the watch error handler of the informer of one
// referenced object: a forbidden or unauthorised list or watch is retried
// quietly (logged at debug level) until it has lasted
// watchRefusalTolerated, then logged as an error each time it recurs;
// other errors are handled as client-go does by default.
func quietWatchErrors(clk clock.PassiveClock) cache.WatchErrorHandlerWithContext {
	var mu sync.Mutex
	var since, last time.Time
	return func(ctx context.Context, r *cache.Reflector, err error) {
		if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			return
		}
		now := clk.Now()
		mu.Lock()
		if since.IsZero() || now.Sub(last) > watchRefusalGap {
			since = now
		}
		last = now
		lasted := now.Sub(since)
		mu.Unlock()
		log := klog.FromContext(ctx)
		if lasted < watchRefusalTolerated {
			log.V(1).Info("Not allowed to watch a referenced object yet, retrying: a new subscription's grant takes a moment to apply", "err", err.Error())
			return
		}
		log.Error(err, "Still not allowed to watch a referenced object; check the dispatcher's RBAC for it", "for", lasted.Round(time.Second).String())
	}
}
