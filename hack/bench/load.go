package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// event is one event as producers publish it.
type event struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// appendJSON appends the event as JSON. Ids and types are plain ASCII and
// data is valid JSON, so concatenation is enough, and keeps the load
// generator's own cost low.
func (e event) appendJSON(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, e.ID...)
	b = append(b, `","type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// payload is event data of about size bytes: a sequence number and padding,
// the same for the dispatcher and its baselines.
func payload(size, seq int) json.RawMessage {
	head := `{"seq":` + strconv.Itoa(seq) + `,"pad":"`
	pad := max(size-len(head)-2, 0)
	return json.RawMessage(head + strings.Repeat("x", pad) + `"}`)
}

// events makes n events of type typ with ids prefix-0, prefix-1, ...
func events(n int, prefix, typ string, size int) []event {
	out := make([]event, n)
	for i := range out {
		out[i] = newEvent(prefix, i, typ, size)
	}
	return out
}

func newEvent(prefix string, i int, typ string, size int) event {
	return event{ID: prefix + "-" + strconv.Itoa(i), Type: typ, Data: payload(size, i)}
}

// newHTTPClient is a client keeping up to conns idle connections per host,
// so that concurrent senders reuse connections rather than churning them.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: max(conns, 2),
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 60 * time.Second,
	}
}

// producer publishes events to a dispatcher's ingest API with a
// ServiceAccount token.
type producer struct {
	client *http.Client
	ingest string // host:port
	ns     string
	token  string
}

func (p producer) post(ctx context.Context, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.ingest+"/v1/namespaces/"+p.ns+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building an ingest request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to the ingest API: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		if len(answer) > 300 {
			answer = answer[:300]
		}
		return &ingestError{code: resp.StatusCode, answer: string(bytes.TrimSpace(answer))}
	}
	return nil
}

// ingestError is an answer of the ingest API other than 202.
type ingestError struct {
	code   int
	answer string
}

func (e *ingestError) Error() string { return fmt.Sprintf("ingest answered %d: %s", e.code, e.answer) }

// refused says whether err is ingest refusing to store some events for
// now (503, or 207 for a batch stored in part): a producer sends them again.
func refused(err error) bool {
	var ie *ingestError
	return errors.As(err, &ie) && (ie.code == http.StatusServiceUnavailable || ie.code == http.StatusMultiStatus)
}

// single publishes one event.
func (p producer) single(ctx context.Context, ev event) error {
	return p.post(ctx, "/events", ev.appendJSON(nil))
}

// batch publishes events in one request.
func (p producer) batch(ctx context.Context, evs []event) error {
	body := append(make([]byte, 0, len(evs)*(len(evs[0].Data)+80)), `{"events":[`...)
	for i, ev := range evs {
		if i > 0 {
			body = append(body, ',')
		}
		body = ev.appendJSON(body)
	}
	return p.post(ctx, "/events:batch", append(body, "]}"...))
}

// publishBatches publishes evs in batches of size from concurrency
// producers at once.
func (p producer) publishBatches(ctx context.Context, evs []event, size, concurrency int) error {
	var batches [][]event
	for start := 0; start < len(evs); start += size {
		batches = append(batches, evs[start:min(start+size, len(evs))])
	}
	return parallel(ctx, len(batches), concurrency, func(ctx context.Context, i int) error {
		return p.batch(ctx, batches[i])
	})
}

// retried is the outcome of publishRetrying.
type retried struct {
	// stored counts the events of batches answered 202.
	stored int
	// refusals counts the answers that refused a batch.
	refusals int
	// lastRefusal is the last of them.
	lastRefusal error
	// gaveUp says the producer stopped: no batch had been stored for the
	// stall time.
	gaveUp bool
}

// publishRetrying publishes evs in batches of size from concurrency
// producers at once, as a careful producer does: a batch that ingest
// refuses for now (503, or 207 stored in part) is sent again, with the same
// ids, after a pause. Once no batch at all has been stored for stall, it
// gives up on the batches left.
func (p producer) publishRetrying(ctx context.Context, evs []event, size, concurrency int, stall time.Duration) (retried, error) {
	var batches [][]event
	for start := 0; start < len(evs); start += size {
		batches = append(batches, evs[start:min(start+size, len(evs))])
	}
	var stored, refusals atomic.Int64
	var lastRefusal atomic.Pointer[error]
	var gaveUp atomic.Bool
	var progress atomic.Int64
	progress.Store(time.Now().UnixNano())
	err := parallel(ctx, len(batches), concurrency, func(ctx context.Context, i int) error {
		for !gaveUp.Load() {
			err := p.batch(ctx, batches[i])
			if err == nil {
				stored.Add(int64(len(batches[i])))
				progress.Store(time.Now().UnixNano())
				return nil
			}
			if !refused(err) {
				return err
			}
			refusals.Add(1)
			lastRefusal.Store(&err)
			if time.Since(time.Unix(0, progress.Load())) > stall {
				gaveUp.Store(true)
				return nil
			}
			sleep(ctx, 100*time.Millisecond)
		}
		return nil
	})
	r := retried{stored: int(stored.Load()), refusals: int(refusals.Load()), gaveUp: gaveUp.Load()}
	if last := lastRefusal.Load(); last != nil {
		r.lastRefusal = *last
	}
	return r, err
}

// publishSingles publishes evs one per request from concurrency producers at
// once.
func (p producer) publishSingles(ctx context.Context, evs []event, concurrency int) error {
	return parallel(ctx, len(evs), concurrency, func(ctx context.Context, i int) error {
		return p.single(ctx, evs[i])
	})
}

// parallel runs do(0..n-1) on concurrency goroutines and returns the first
// error, after which the remaining items are skipped.
func parallel(ctx context.Context, n, concurrency int, do func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// plainPost is the baseline sender: a POST of body with nothing but a
// content type and a webhook-id, so the receiver can tell requests apart.
func plainPost(ctx context.Context, client *http.Client, url, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building a request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", id)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to the receiver: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return nil
}

// openLoop calls send(i) for i in 0..n-1 at rate per second, each in its own
// goroutine, on schedule whether or not earlier calls have returned, and
// waits for them all. It returns the first error.
func openLoop(ctx context.Context, rate float64, n int, send func(context.Context, int) error) error {
	period := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			case <-time.After(d):
			}
		}
		wg.Go(func() {
			if err := send(ctx, i); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return nil
}
