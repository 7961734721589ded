package dispatcher

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestQuietWatchErrors checks that a refused watch of a referenced Secret
// is logged at debug level while it is young, as error once it persists,
// and quietly again when it comes back much later.
func TestQuietWatchErrors(t *testing.T) {
	var logged []string
	logger := funcr.NewJSON(func(obj string) { logged = append(logged, obj) }, funcr.Options{Verbosity: 1})
	ctx := klog.NewContext(context.Background(), logger)
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	handle := quietWatchErrors(clk)
	forbidden := fmt.Errorf("failed to list *v1.Secret: %w", apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "orders-signing",
		fmt.Errorf("User %q cannot list resource \"secrets\"", "system:serviceaccount:hookline-system:default-dispatcher")))

	for _, step := range []struct {
		after time.Duration
		want  string
	}{
		{0, `"level":1,"msg":"Not allowed to watch a referenced object yet`},
		{10 * time.Second, `"level":1,"msg":"Not allowed to watch a referenced object yet`},
		{25 * time.Second, `"msg":"Still not allowed to watch a referenced object; check the dispatcher's RBAC for it","error":"failed to list *v1.Secret: secrets \"orders-signing\" is forbidden`},
		// Much later: a new subscription's grant, a new episode.
		{time.Hour, `"level":1,"msg":"Not allowed to watch a referenced object yet`},
	} {
		clk.SetTime(clk.Now().Add(step.after))
		logged = nil
		handle(ctx, nil, forbidden)
		if len(logged) != 1 || !strings.Contains(logged[0], step.want) {
			t.Errorf("after %s: logged %q, want one line with %s", step.after, logged, step.want)
		}
	}
}
