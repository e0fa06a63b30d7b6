// Package askqueue keeps the helper's questions in order for each agent and bounds the calls in flight.
//
// A D-Bus call waits on the bus as a pending reply until the agent answers, and the bus refuses a connection
// more than a limit of those (max_replies_per_connection, 128 on a default system bus). Questions are
// therefore queued here, first come first served, and handed out only while fewer than PerAgent calls to that
// agent and fewer than Total calls in all are open: a flood waits its turn instead of failing at the bus.
package askqueue

import (
	"context"
	"sync"
)

// Limits of calls in flight. Total stays well below the bus's 128 so that other calls of the helper's
// connection (polkit, bus queries) always fit.
const (
	DefaultPerAgent = 8
	DefaultTotal    = 64
)

// Queue hands out turns to call agents. The zero value is not usable; use New.
type Queue struct {
	perAgent, total int

	mu       sync.Mutex
	inFlight map[string]int
	open     int
	waiters  []*waiter // in arrival order
}

type waiter struct {
	agent string
	ready chan struct{} // closed when the turn is granted
}

// New returns a queue with the given limits (values below 1 take the defaults).
func New(perAgent, total int) *Queue {
	if perAgent < 1 {
		perAgent = DefaultPerAgent
	}
	if total < 1 {
		total = DefaultTotal
	}
	return &Queue{perAgent: perAgent, total: total, inFlight: map[string]int{}}
}

// Turn is a granted turn; Done gives it back. Done is idempotent.
type Turn struct {
	q     *Queue
	agent string
	once  sync.Once
}

// Done ends the turn and lets the next waiting question go.
func (t *Turn) Done() {
	t.once.Do(func() {
		t.q.mu.Lock()
		t.q.inFlight[t.agent]--
		if t.q.inFlight[t.agent] <= 0 {
			delete(t.q.inFlight, t.agent)
		}
		t.q.open--
		t.q.grantLocked()
		t.q.mu.Unlock()
	})
}

// Wait waits for a turn to call agent, in arrival order among the questions for that agent. It returns
// ctx's error when ctx ends first (nothing is then held).
func (q *Queue) Wait(ctx context.Context, agent string) (*Turn, error) {
	w := &waiter{agent: agent, ready: make(chan struct{})}
	q.mu.Lock()
	q.waiters = append(q.waiters, w)
	q.grantLocked()
	q.mu.Unlock()
	select {
	case <-w.ready:
		return &Turn{q: q, agent: agent}, nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while giving up: give it back.
		q.inFlight[agent]--
		if q.inFlight[agent] <= 0 {
			delete(q.inFlight, agent)
		}
		q.open--
		q.grantLocked()
	default:
		q.removeLocked(w)
	}
	return nil, ctx.Err()
}

// Waiting is how many questions wait for a turn to call agent.
func (q *Queue) Waiting(agent string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, w := range q.waiters {
		if w.agent == agent {
			n++
		}
	}
	return n
}

// InFlight is the number of turns granted and not yet done, for agent ("" for all).
func (q *Queue) InFlight(agent string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if agent == "" {
		return q.open
	}
	return q.inFlight[agent]
}

// grantLocked grants turns to the earliest waiters that fit the limits. A waiter for a busy agent does not
// hold back those for other agents.
func (q *Queue) grantLocked() {
	kept := q.waiters[:0]
	for _, w := range q.waiters {
		if q.open < q.total && q.inFlight[w.agent] < q.perAgent {
			q.inFlight[w.agent]++
			q.open++
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	for i := len(kept); i < len(q.waiters); i++ {
		q.waiters[i] = nil
	}
	q.waiters = kept
}

func (q *Queue) removeLocked(w *waiter) {
	for i, cur := range q.waiters {
		if cur == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return
		}
	}
}
