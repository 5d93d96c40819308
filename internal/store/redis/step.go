package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"greyd/internal/store"
)

// resultLen is the number of integers step.lua returns.
const resultLen = 27

// Step implements store.Store: one EVALSHA of step.lua (EVAL once after
// Redis lost its script cache), within the store's deadline. While the
// breaker is open it fails at once with the outage's error.
func (s *Store) Step(ctx context.Context, in *store.StepInput) (store.StepResult, error) {
	if s.closed.Load() {
		return store.StepResult{}, store.ErrClosed
	}
	if o := s.down.Load(); o != nil {
		o.failed.Add(1)
		return store.StepResult{}, o.err
	}
	c := s.client.Load() // set before the breaker first closed

	var kb [7]string
	keys := append(kb[:0], s.schemaKey, s.countsKey, s.tripletNS+in.TripletKey)
	hasClient, hasAlt := "0", "0"
	if in.ClientKey != "" && in.AWLClients > 0 {
		keys = append(keys, s.clientNS+in.ClientKey)
		hasClient = "1"
	}
	if in.AltKey != "" && in.AltKey != in.TripletKey {
		keys = append(keys, s.tripletNS+in.AltKey)
		hasAlt = "1"
	}
	hasTrap := "0"
	if in.TrapKey != "" {
		keys = append(keys, s.trapNS+in.TrapKey)
		hasTrap = "1"
	}
	hasTarpit := "0"
	if in.TarpitKey != "" {
		keys = append(keys, s.tarpitNS+in.TarpitKey)
		hasTarpit = "1"
	}
	args := [...]string{
		strconv.FormatInt(in.Now, 10), flag(in.FixedNow),
		strconv.FormatInt(in.Delay, 10), strconv.FormatInt(in.RetryWindow, 10),
		strconv.FormatInt(in.MaxAge, 10), strconv.FormatInt(in.AWLClients, 10),
		flag(in.DryRun), hasClient, hasAlt, flag(in.Hold),
		hasTrap, flag(in.TrapHit), strconv.FormatInt(in.TrapFor, 10),
		hasTarpit, strconv.Itoa(int(in.TarpitOp)), strconv.FormatInt(in.TarpitSession, 10),
		flag(in.TarpitKeep), strconv.FormatInt(in.AbandonDelay, 10), flag(in.TripletKey != ""),
	}

	sctx, cancel := context.WithTimeout(ctx, s.deadline())
	v, err := s.script.Exec(sctx, c.c, keys, args[:]).AsIntSlice()
	cancel()
	if err == nil && len(v) != resultLen {
		err = fmt.Errorf("step script returned %d values, want %d", len(v), resultLen)
	}
	if err != nil {
		return store.StepResult{}, s.stepFailed(ctx, err)
	}
	s.succeeded()
	return decodeResult(v)
}

// stepFailed counts a failed step for the breaker and returns its error.
func (s *Store) stepFailed(ctx context.Context, err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "GREYDSCHEMA ") {
		err = fmt.Errorf("%w: %s", ErrSchema, strings.TrimPrefix(re.Error(), "GREYDSCHEMA "))
	} else if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("no answer within %v (%w)", s.deadline(), err)
	}
	// The caller giving up is not Redis's failure; our own deadline is.
	if !errors.Is(ctx.Err(), context.Canceled) {
		s.failed(err)
	}
	if errors.Is(err, ErrSchema) {
		return err
	}
	return fmt.Errorf("redis: %w", err)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// decodeResult turns step.lua's reply into a StepResult.
func decodeResult(v []int64) (store.StepResult, error) {
	o := store.Outcome(v[0])
	if v[0] < int64(store.Greylisted) || v[0] > int64(store.AutoWhitelisted) {
		return store.StepResult{}, fmt.Errorf("redis: step script returned outcome %d", v[0])
	}
	return store.StepResult{
		Outcome:          o,
		Now:              v[1],
		First:            v[2],
		Missing:          v[3],
		Waited:           v[4],
		ViaAlt:           v[5] != 0,
		NewlyWhitelisted: v[6] != 0,
		FutureCorrected:  v[7] != 0,
		Trapped:          v[8] != 0,
		TrapSet:          v[9] != 0,
		TrapUntil:        v[10],
		Tarpit:           store.TarpitResult(v[11]),
		Before: store.State{
			ClientFound:  v[12] != 0,
			Client:       store.Client{Count: v[13], Last: v[14]},
			TripletFound: v[15] != 0,
			Triplet:      store.Triplet{First: v[16], Last: v[17]},
			AltFound:     v[18] != 0,
			Alt:          store.Triplet{First: v[19], Last: v[20]},
			TrapFound:    v[21] != 0,
			Trap:         store.Trap{Since: v[22], Until: v[23]},
			TarpitFound:  v[24] != 0,
			Tarpit:       store.Tarpit{Since: v[25], Session: v[26]},
		},
	}, nil
}
