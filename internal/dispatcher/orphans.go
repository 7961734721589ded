package dispatcher

import (
	"context"
	"log/slog"

	"github.com/hookline/hookline/internal/queue"
)

// orphanCollector deletes the checkpoints and backlogs of subscriptions
// that are gone (deleted while no instance ran, or while their owner was
// stopped), and only those orphaned at two passes in a row, so a
// subscription this instance has not seen yet never loses its checkpoint.
type orphanCollector struct {
	queue *queue.Queue
	view  *progressView
	// exists says whether a subscription token names a subscription of
	// the dispatcher.
	exists func(token string) bool
	log    *slog.Logger

	// orphans are checkpoints seen without a subscription at the last
	// pass; they are deleted if still orphaned at the next. Only the
	// goroutine calling collect uses them.
	orphans map[string]bool
}

// collect makes one pass.
func (c *orphanCollector) collect(ctx context.Context) {
	orphans := map[string]bool{}
	for _, tok := range c.view.tokens() {
		if c.exists(tok) {
			continue
		}
		if !c.orphans[tok] {
			orphans[tok] = true
			continue
		}
		err := c.queue.DeleteProgress(ctx, tok)
		if err == nil {
			err = c.queue.PurgeBacklog(ctx, tok, 0)
		}
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("Deleting the checkpoint of a deleted subscription", "token", tok, "err", err)
			}
			orphans[tok] = true
			continue
		}
		c.view.forget(tok)
	}
	c.orphans = orphans
}
