package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Packet is one queued packet.
type Packet struct {
	ID      uint32
	Mark    uint32
	UID     uint32 // owner of the sending socket; valid when HasUID
	HasUID  bool
	Headers Headers
	Time    time.Time
}

// MaxQueued bounds the packets the kernel keeps waiting for the helper. Beyond it new ones are dropped (TCP
// retries them), never passed unasked.
const MaxQueued = 8192

// Queue reads the packets the hold chain queues, and takes the helper's verdicts on them.
type Queue struct {
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc
}

// OpenQueue opens a netlink socket for queue num; Start binds it. Verdicts may be given once packets come.
func OpenQueue(num uint16) (*Queue, error) {
	if num == 0 {
		num = DefaultQueue
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      num,
		MaxPacketLen: 128, // IP and transport headers are all the helper reads
		MaxQueueLen:  MaxQueued,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagUIDGid,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("open netfilter queue %d: %w", num, err)
	}
	return &Queue{nf: nf, cancel: func() {}}, nil
}

// Start binds the queue and calls handle for each packet, from one reader goroutine that stops when ctx ends
// or Close is called. handle must not block: it records the packet and returns.
func (q *Queue) Start(ctx context.Context, log *slog.Logger, handle func(Packet)) error {
	nf := q.nf
	// A burst larger than the socket buffer must not stop the reader: lost notifications are retried by TCP.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		log.Warn("netfilter queue: cannot ignore ENOBUFS", "error", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	q.cancel = cancel
	onPacket := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		p := Packet{ID: *a.PacketID, Time: time.Now()}
		if a.Mark != nil {
			p.Mark = *a.Mark
		}
		if a.UID != nil {
			p.UID, p.HasUID = *a.UID, true
		}
		if a.Payload != nil {
			h, err := ParseHeaders(*a.Payload)
			if err != nil {
				// Not something Tattle decides (the marks are only put on TCP and UDP sockets): let it go.
				log.Debug("netfilter queue: unparsable packet passed", "error", err)
				_ = nf.SetVerdict(p.ID, nfqueue.NfAccept)
				return 0
			}
			p.Headers = h
		}
		handle(p)
		return 0
	}
	onError := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		var opErr *netlink.OpError
		if errors.As(err, &opErr) && (opErr.Timeout() || errors.Is(opErr.Err, unix.ENOBUFS)) {
			return 0
		}
		if errors.Is(err, unix.ENOENT) {
			// A verdict for a packet the kernel no longer holds (its device went away, say).
			log.Debug("netfilter queue: verdict for a packet no longer queued", "error", err)
			return 0
		}
		log.Warn("netfilter queue: read failed", "error", err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, onPacket, onError); err != nil {
		cancel()
		return fmt.Errorf("bind the netfilter queue (is another helper running?): %w", err)
	}
	return nil
}

// Accept lets a held packet continue.
func (q *Queue) Accept(id uint32) error {
	return q.nf.SetVerdict(id, nfqueue.NfAccept)
}

// Refuse sends a held packet on with mark (its own mark plus the deny bit), for the refuse chain to answer it
// with a reset.
func (q *Queue) Refuse(id uint32, mark uint32) error {
	return q.nf.SetVerdictWithMark(id, nfqueue.NfAccept, int(mark))
}

// Drop discards a held packet.
func (q *Queue) Drop(id uint32) error {
	return q.nf.SetVerdict(id, nfqueue.NfDrop)
}

// Close stops reading. Packets still held are dropped by the kernel when the queue is unbound; the
// applications' TCP retransmissions bring them back to the next helper.
func (q *Queue) Close() error {
	q.cancel()
	return q.nf.Close()
}
