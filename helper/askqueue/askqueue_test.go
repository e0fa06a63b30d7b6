package askqueue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFloodWaitsItsTurn: many questions for one agent never exceed the per-agent limit, all get their turn,
// and (one at a time) they get it in arrival order.
func TestFloodWaitsItsTurn(t *testing.T) {
	for _, limit := range []int{1, 4} {
		q := New(limit, 10)
		const n = 200
		var mu sync.Mutex
		var order []int
		maxSeen := 0
		var wg sync.WaitGroup
		var completed atomic.Int64
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				turn, err := q.Wait(context.Background(), "a")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				if f := q.InFlight("a"); f > maxSeen {
					maxSeen = f
				}
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				turn.Done()
				completed.Add(1)
			}(i)
			// Arrival order is the order of Wait calls: let each enqueue before the next.
			for q.Waiting("a")+q.InFlight("a")+int(completed.Load()) < i+1 {
				time.Sleep(10 * time.Microsecond)
			}
		}
		wg.Wait()
		if len(order) != n {
			t.Fatalf("limit %d: %d of %d got a turn", limit, len(order), n)
		}
		if maxSeen > limit {
			t.Errorf("%d calls in flight to one agent, limit %d", maxSeen, limit)
		}
		if limit == 1 {
			for i := range order {
				if order[i] != i {
					t.Fatalf("turn %d went to question %d: not arrival order", i, order[i])
				}
			}
		}
	}
}

// TestTotalLimitAndOtherAgents: a busy agent does not hold back another one's questions, and the total bound
// holds across agents.
func TestTotalLimitAndOtherAgents(t *testing.T) {
	q := New(2, 3)
	ctx := context.Background()
	a1, _ := q.Wait(ctx, "a")
	a2, _ := q.Wait(ctx, "a")
	waitA := make(chan *Turn)
	go func() { t3, _ := q.Wait(ctx, "a"); waitA <- t3 }()
	b1, err := q.Wait(ctx, "b") // a is full, b is not: b goes first
	if err != nil {
		t.Fatal(err)
	}
	if got := q.InFlight(""); got != 3 {
		t.Fatalf("in flight %d, want 3", got)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := q.Wait(short, "c"); err == nil {
		t.Fatal("a fourth call was let through past the total of 3")
	}
	if q.Waiting("c") != 0 {
		t.Fatal("a waiter that gave up is still queued")
	}
	b1.Done()
	select {
	case <-waitA:
		t.Fatal("a got a third call in flight")
	case <-time.After(50 * time.Millisecond):
	}
	a1.Done()
	a1.Done() // idempotent
	t3 := <-waitA
	if q.InFlight("a") != 2 {
		t.Fatalf("a in flight %d", q.InFlight("a"))
	}
	a2.Done()
	t3.Done()
	if q.InFlight("") != 0 {
		t.Fatalf("turns left open: %d", q.InFlight(""))
	}
}
