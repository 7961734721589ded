package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/hookline/hookline/internal/keys"
)

// signing is section 6: signatures per second on one goroutine, that is per
// core, of a 1 KiB body with each algorithm, against a plain SHA-256 of the
// same body.
func (b *bench) signing() []row {
	cfg := b.cfg
	hmacName := "Signing, HMAC-SHA256, 1 KiB body, per core"
	edName := "Signing, Ed25519, 1 KiB body, per core"
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	hmacKey, err := keys.Generate(keys.HMACSHA256, rand.Reader)
	if err != nil {
		return []row{failedRow(hmacName, err), failedRow(edName, err)}
	}
	edKey, err := keys.Generate(keys.Ed25519, rand.Reader)
	if err != nil {
		return []row{failedRow(hmacName, err), failedRow(edName, err)}
	}
	timestamp := time.Now().Unix()
	// Each loop is CPU-bound and steady: half the usual duration is plenty.
	d := max(cfg.Duration/2, 100*time.Millisecond)
	var hmacs, eds, hashes []float64
	var sink int
	for range cfg.Runs {
		hmacs = append(hmacs, opsPerSecond(d, func() { sink += len(hmacKey.Sign("msg_bench", timestamp, body)) }))
		eds = append(eds, opsPerSecond(d, func() { sink += len(edKey.Sign("msg_bench", timestamp, body)) }))
		hashes = append(hashes, opsPerSecond(d, func() {
			sum := sha256.Sum256(body)
			sink += int(sum[0])
		}))
	}
	if sink == 0 {
		return []row{failedRow(hmacName, fmt.Errorf("signing produced nothing")), failedRow(edName, fmt.Errorf("signing produced nothing"))}
	}
	return []row{
		newRow(hmacName, perSecond, hmacs, "SHA-256 of the body", hashes, goal{}),
		newRow(edName, perSecond, eds, "SHA-256 of the body", hashes, goal{}),
	}
}

// opsPerSecond calls op in a loop for about d and returns its rate.
func opsPerSecond(d time.Duration, op func()) float64 {
	n := 0
	start := time.Now()
	for {
		for range 64 {
			op()
		}
		n += 64
		if elapsed := time.Since(start); elapsed >= d {
			return float64(n) / elapsed.Seconds()
		}
	}
}
