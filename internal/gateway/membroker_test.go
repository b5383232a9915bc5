package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// memBroker is an in-memory broker.Publisher and broker.Store with
// JetStream's deduplication by message ID. Acks come from one goroutine,
// like a real broker's.
type memBroker struct {
	acks chan ack
	wg   sync.WaitGroup

	mu       sync.Mutex
	msgs     []storedBatch
	seen     map[string]bool
	sessions map[string]broker.SessionState
	dups     int
}

type ack struct {
	b    *broker.Batch
	done func(*broker.Batch, error)
}

type storedBatch struct {
	subject  string
	shard    int
	n        int
	session  string
	lease    uint64
	payloads [][]byte
}

func newMemBroker(t testing.TB) *memBroker {
	m := &memBroker{acks: make(chan ack, 64), seen: map[string]bool{}, sessions: map[string]broker.SessionState{}}
	m.wg.Go(func() {
		for a := range m.acks {
			a.done(a.b, nil)
		}
	})
	t.Cleanup(func() { close(m.acks); m.wg.Wait() })
	return m
}

func (m *memBroker) MaxBody() int { return 1 << 20 }

func (m *memBroker) Publish(ctx context.Context, b *broker.Batch, done func(*broker.Batch, error)) error {
	m.mu.Lock()
	id := b.MsgID()
	b.Duplicate = m.seen[id]
	if m.seen[id] {
		m.dups++

	} else {
		m.seen[id] = true
		sb := storedBatch{subject: b.Subject, shard: b.Shard, n: b.NumShards, session: b.Session, lease: b.Lease}
		err := broker.Records(b.Body, func(p []byte) error {
			sb.payloads = append(sb.payloads, slices.Clone(p))
			return nil
		})
		if err != nil {
			m.mu.Unlock()
			return err
		}
		m.msgs = append(m.msgs, sb)
	}
	m.mu.Unlock()
	select {
	case m.acks <- ack{b, done}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func key(shard, n int) string { return fmt.Sprint(n, ".", shard) }

func (m *memBroker) LoadSession(ctx context.Context, shard, n int) (broker.SessionState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.sessions[key(shard, n)]
	if !ok {
		return st, broker.ErrNotFound
	}
	return st, nil
}

func (m *memBroker) SaveSession(ctx context.Context, st broker.SessionState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.sessions[key(st.Shard, st.NumShards)]; ok && cur.Lease > st.Lease && st.Lease != 0 {
		return broker.ErrFenced
	}
	m.sessions[key(st.Shard, st.NumShards)] = st
	return nil
}

func (m *memBroker) DeleteSession(ctx context.Context, shard, n int, lease uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.sessions[key(shard, n)]; ok && cur.Lease > lease && lease != 0 {
		return broker.ErrFenced
	}
	delete(m.sessions, key(shard, n))
	return nil
}

func (m *memBroker) LastBatch(ctx context.Context, shard int) (broker.LastBatch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.msgs) - 1; i >= 0; i-- {
		if b := m.msgs[i]; b.shard == shard {
			h, _ := discord.ScanHeader(b.payloads[len(b.payloads)-1])
			return broker.LastBatch{Session: b.session, LastSeq: h.S, NumShards: b.n}, nil
		}
	}
	return broker.LastBatch{}, broker.ErrNotFound
}

// event is one published dispatch.
type event struct {
	shard   int
	n       int // shard count
	session string
	seq     int64
	typ     string
	subject string
	simID   string
}

// events returns every stored dispatch in stream order.
func (m *memBroker) events(t testing.TB) []event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []event
	for _, b := range m.msgs {
		for _, p := range b.payloads {
			h, err := discord.ScanHeader(p)
			if err != nil {
				t.Fatalf("stored payload does not scan: %v", err)
			}
			out = append(out, event{shard: b.shard, n: b.n, session: b.session, seq: h.S, typ: string(h.T), subject: b.subject, simID: simEventID(p)})
		}
	}
	return out
}

// leases returns the lease tokens of shard's stored batches, in order.
func (m *memBroker) leases(shard int) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint64
	for _, b := range m.msgs {
		if b.shard == shard {
			out = append(out, b.lease)
		}
	}
	return out
}

func (m *memBroker) session(shard, n int) broker.SessionState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[key(shard, n)]
}
