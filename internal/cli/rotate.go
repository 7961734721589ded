package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// pollInterval is how often waits read the API.
const pollInterval = 500 * time.Millisecond

func newRotateCommand(a *app) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate WEBHOOKSECRET [--timeout 2m]",
		Short: "Rotate the signing key of a WebhookSecret and wait for the new key",
		Long: `Ask the controller for a new signing key by setting the annotation
hookline.dev/rotate of the WebhookSecret to a new value, then wait until
the WebhookSecret reports a new current key for that request. The previous
key keeps signing during the overlap window (spec.rotation.overlap, 24h by
default), so receivers holding either key keep verifying.`,
		Example: `  # Rotate the keys of the WebhookSecret orders-signing of namespace shop
  kubectl hookline rotate orders-signing -n shop`,
		Args: exactlyOneArg("WEBHOOKSECRET name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usageErrorf("--timeout must be positive, for example --timeout 2m")
			}
			return a.rotate(cmd, args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "How long to wait for the new key")
	return cmd
}

func (a *app) rotate(cmd *cobra.Command, name string, timeout time.Duration) error {
	ctx := cmd.Context()
	ns, err := a.namespace()
	if err != nil {
		return err
	}
	ref := ns + "/" + name
	what := "webhooksecret " + ref
	notFound := "list them with kubectl get webhooksecrets -n " + ns
	hl, err := a.hooklineClient()
	if err != nil {
		return err
	}
	ws, err := hl.webhookSecret(ctx, ns, name)
	if err != nil {
		return apiError(err, what, notFound)
	}
	oldKey := ws.Status.CurrentKeyID
	request, err := rotateRequest(a.clock.Now())
	if err != nil {
		return err
	}
	if _, err := hl.annotateSecret(ctx, ns, name, hooklinev1.RotateAnnotation, request); err != nil {
		return apiError(err, what, notFound)
	}

	deadline := a.clock.Now().Add(timeout)
	for {
		ws, err = hl.webhookSecret(ctx, ns, name)
		if err != nil {
			return apiError(err, what, notFound)
		}
		if rotated(ws, oldKey, request) {
			break
		}
		if !a.clock.Now().Before(deadline) {
			return timeoutErrorf("timed out after %s waiting for %s to rotate (current key still %s); the request %s=%s stays and the controller handles it when it can: check kubectl describe webhooksecret %s -n %s",
				timeout, what, orDefault(oldKey, "none"), hooklinev1.RotateAnnotation, request, name, ns)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.clock.After(pollInterval):
		}
	}
	fmt.Fprintf(a.out, "rotated %s: %s → %s (%s)\n", ref, orDefault(oldKey, "no key"), ws.Status.CurrentKeyID, previousKeyFate(ws, oldKey))
	return nil
}

// rotateRequest is a new value for the rotate annotation: the time, for
// people reading it, and a random suffix, so two requests in the same
// second still differ.
func rotateRequest(now time.Time) (string, error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("generating the rotation request: %w", err)
	}
	return now.UTC().Format(time.RFC3339) + "-" + hex.EncodeToString(suffix[:]), nil
}

// rotated says whether ws reports the rotation asked for by request.
func rotated(ws *hooklinev1.WebhookSecret, oldKey, request string) bool {
	return ws.Status.LastHandledRotateRequest == request && ws.Status.CurrentKeyID != "" && ws.Status.CurrentKeyID != oldKey
}

// previousKeyFate says until when the key that was current keeps signing.
func previousKeyFate(ws *hooklinev1.WebhookSecret, oldKey string) string {
	if oldKey == "" {
		return "the first key"
	}
	for _, k := range ws.Status.Keys {
		if k.ID == oldKey && k.ExpiresAt != nil {
			return "the old key signs too until " + k.ExpiresAt.UTC().Format(time.RFC3339)
		}
	}
	return "the old key no longer signs"
}
