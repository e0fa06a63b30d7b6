package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/gotk3/gotk3/cairo"
	"github.com/gotk3/gotk3/gdk"
	"github.com/gotk3/gotk3/glib"
	"github.com/gotk3/gotk3/gtk"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/tattle/ui"
	"github.com/tattlefw/tattle/shared/api"
)

// TrafficSource reads the history's traffic in buckets (the client's Monitor.Traffic); until zero is now.
type TrafficSource func(ctx context.Context, since, until time.Time, bucket time.Duration) ([]api.TrafficBucket, error)

// A chart range: how far back it shows, in buckets of what width, and how often it is read again.
type chartRange struct {
	label          string
	span, bucket   time.Duration
	refreshEvery   time.Duration
	bucketsPerAxis int
}

func chartRanges() []chartRange {
	return []chartRange{
		{i18n.T("Last hour"), time.Hour, time.Minute, 10 * time.Second, 60},
		{i18n.T("Last day"), 24 * time.Hour, 15 * time.Minute, time.Minute, 96},
		{i18n.T("Last week"), 7 * 24 * time.Hour, 2 * time.Hour, 5 * time.Minute, 84},
	}
}

// chart is the traffic chart above the connection list: bytes sent and received per bucket over the chosen
// range, from the helper's history. Dragging across it selects a span; the list then shows the connections
// active in it (a click clears the selection).
type chart struct {
	Widget  *gtk.Box
	area    *gtk.DrawingArea
	summary *gtk.Label
	ranges  []chartRange
	current int

	from    time.Time // the shown window
	tx, rx  []uint64  // per bucket of the window
	drag    [2]float64
	picking bool
	sel     [2]time.Time // the selected span; zero: none

	onSelect func(since, until time.Time) // zero times: the selection was cleared
	refresh  chan struct{}
}

func newChart(ctx context.Context, source TrafficSource, onSelect func(since, until time.Time)) *chart {
	c := &chart{ranges: chartRanges(), onSelect: onSelect, refresh: make(chan struct{}, 1)}
	c.Widget = ui.Must(gtk.BoxNew(gtk.ORIENTATION_VERTICAL, 2))
	c.Widget.SetMarginStart(6)
	c.Widget.SetMarginEnd(6)
	top := ui.Must(gtk.BoxNew(gtk.ORIENTATION_HORIZONTAL, 6))
	title := ui.Must(gtk.LabelNew(""))
	title.SetMarkup("<b>" + glib.MarkupEscapeText(i18n.T("Traffic")) + "</b>")
	top.PackStart(title, false, false, 0)
	c.summary = ui.Must(gtk.LabelNew(""))
	c.summary.SetXAlign(0)
	c.summary.SetEllipsize(3) // PANGO_ELLIPSIZE_END
	ui.Dim(c.summary)
	top.PackStart(c.summary, true, true, 0)
	combo := ui.Must(gtk.ComboBoxTextNew())
	for _, r := range c.ranges {
		combo.AppendText(r.label)
	}
	combo.SetActive(0)
	ui.SetAccessible(combo, i18n.T("Traffic range"), "")
	combo.Connect("changed", func() {
		c.current = max(combo.GetActive(), 0)
		c.clearSelection()
		c.tx, c.rx = nil, nil
		c.area.QueueDraw()
		c.poke()
	})
	top.PackEnd(combo, false, false, 0)
	c.Widget.PackStart(top, false, false, 0)

	c.area = ui.Must(gtk.DrawingAreaNew())
	c.area.SetSizeRequest(-1, 80)
	c.area.AddEvents(int(gdk.BUTTON_PRESS_MASK | gdk.BUTTON_RELEASE_MASK | gdk.POINTER_MOTION_MASK))
	ui.SetAccessible(c.area, i18n.T("Traffic chart"), "")
	c.area.Connect("draw", func(da *gtk.DrawingArea, cr *cairo.Context) bool {
		c.draw(cr, float64(da.GetAllocatedWidth()), float64(da.GetAllocatedHeight()))
		return false
	})
	c.area.Connect("button-press-event", func(_ *gtk.DrawingArea, ev *gdk.Event) bool {
		b := gdk.EventButtonNewFromEvent(ev)
		if b.Button() != gdk.BUTTON_PRIMARY {
			return false
		}
		c.picking = true
		c.drag = [2]float64{b.X(), b.X()}
		return true
	})
	c.area.Connect("motion-notify-event", func(_ *gtk.DrawingArea, ev *gdk.Event) bool {
		if c.picking {
			c.drag[1], _ = gdk.EventMotionNewFromEvent(ev).MotionVal()
			c.area.QueueDraw()
		}
		return c.picking
	})
	c.area.Connect("button-release-event", func(_ *gtk.DrawingArea, ev *gdk.Event) bool {
		if !c.picking {
			return false
		}
		c.picking = false
		c.drag[1] = gdk.EventButtonNewFromEvent(ev).X()
		c.pick(float64(c.area.GetAllocatedWidth()))
		return true
	})
	c.Widget.PackStart(c.area, false, false, 0)
	go c.poll(ctx, source)
	return c
}

// poke asks the poller to read the chart's data now.
func (c *chart) poke() {
	select {
	case c.refresh <- struct{}{}:
	default:
	}
}

// poll reads the traffic of the current range until ctx ends: at once, on poke, and every refreshEvery.
func (c *chart) poll(ctx context.Context, source TrafficSource) {
	if source == nil {
		return
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.refresh:
		}
		// The range is the main loop's to read: ask it, then fetch here.
		rc := make(chan chartRange, 1)
		glib.IdleAdd(func() { rc <- c.ranges[c.current] })
		var r chartRange
		select {
		case r = <-rc:
		case <-ctx.Done():
			return
		}
		now := time.Now()
		// Buckets on whole multiples of their width, so that a refresh does not shift every bar.
		until := now.Truncate(r.bucket).Add(r.bucket)
		from := until.Add(-time.Duration(r.bucketsPerAxis) * r.bucket)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		bs, err := source(cctx, from, until, r.bucket)
		cancel()
		glib.IdleAdd(func() { c.set(r, from, bs, err) })
		timer.Reset(r.refreshEvery)
	}
}

// set shows a fetched window, unless the range changed meanwhile.
func (c *chart) set(r chartRange, from time.Time, bs []api.TrafficBucket, err error) {
	if c.ranges[c.current].span != r.span {
		return
	}
	if err != nil {
		c.summary.SetText(fmt.Sprintf(i18n.T("No traffic history: %v"), err))
		c.tx, c.rx = nil, nil
		c.area.QueueDraw()
		return
	}
	c.from = from
	c.tx, c.rx = make([]uint64, r.bucketsPerAxis), make([]uint64, r.bucketsPerAxis)
	var sent, received uint64
	for _, b := range bs {
		i := int(time.UnixMilli(b.Start).Sub(from) / r.bucket)
		if i < 0 || i >= len(c.tx) {
			continue
		}
		c.tx[i] += b.Sent
		c.rx[i] += b.Received
		sent += b.Sent
		received += b.Received
	}
	// TRANSLATORS: bytes sent and received over the chart's range, e.g. "12.0 MB sent, 300 MB received"
	text := fmt.Sprintf(i18n.T("%s sent, %s received"), glib.FormatSize(sent), glib.FormatSize(received))
	if !c.sel[0].IsZero() {
		text += " · " + fmt.Sprintf(i18n.T("showing connections active %s–%s"), spanClock(c.sel[0], r), spanClock(c.sel[1], r))
	}
	c.summary.SetText(text)
	ui.SetAccessible(c.area, i18n.T("Traffic chart"), text)
	c.area.QueueDraw()
}

func spanClock(t time.Time, r chartRange) string {
	if r.span > 24*time.Hour {
		return t.Local().Format("Mon 15:04")
	}
	return t.Local().Format("15:04")
}

// pick turns a finished drag into a selected span (whole buckets), or clears the selection after a click.
func (c *chart) pick(w float64) {
	r := c.ranges[c.current]
	x0, x1 := min(c.drag[0], c.drag[1]), max(c.drag[0], c.drag[1])
	if x1-x0 < 3 || w <= 0 || c.from.IsZero() {
		c.clearSelection()
		return
	}
	n := float64(r.bucketsPerAxis)
	b0, b1 := int(max(x0, 0)/w*n), int(min(x1, w)/w*n)+1
	c.sel = [2]time.Time{c.from.Add(time.Duration(b0) * r.bucket), c.from.Add(time.Duration(b1) * r.bucket)}
	c.area.QueueDraw()
	c.onSelect(c.sel[0], c.sel[1])
	c.poke() // the summary names the span
}

func (c *chart) clearSelection() {
	if c.sel[0].IsZero() {
		return
	}
	c.sel = [2]time.Time{}
	c.area.QueueDraw()
	c.onSelect(time.Time{}, time.Time{})
	c.poke()
}

// draw paints received bytes as a filled area and sent bytes as a line over it, scaled to the window's peak,
// the selected span shaded, and the peak written in the corner.
func (c *chart) draw(cr *cairo.Context, w, h float64) {
	cr.SetSourceRGBA(0.5, 0.5, 0.5, 0.12)
	cr.Rectangle(0, 0, w, h)
	cr.Fill()
	r := c.ranges[c.current]
	n := len(c.tx)
	var peak uint64
	for i := 0; i < n; i++ {
		peak = max(peak, c.tx[i], c.rx[i])
	}
	if n > 0 && peak > 0 {
		step := w / float64(n)
		y := func(v uint64) float64 { return h - 1 - float64(v)/float64(peak)*(h-14) }
		// Received: a filled area of bars.
		cr.SetSourceRGBA(0.18, 0.76, 0.49, 0.55)
		for i, v := range c.rx {
			if v > 0 {
				cr.Rectangle(float64(i)*step, y(v), max(step-1, 1), h-y(v))
			}
		}
		cr.Fill()
		// Sent: a line across the bucket centres.
		cr.SetSourceRGB(0.21, 0.52, 0.89)
		cr.SetLineWidth(1.5)
		for i, v := range c.tx {
			if i == 0 {
				cr.MoveTo(step/2, y(v))
			} else {
				cr.LineTo(float64(i)*step+step/2, y(v))
			}
		}
		cr.Stroke()
		cr.SetSourceRGBA(0.3, 0.3, 0.3, 0.9)
		cr.SelectFontFace("sans-serif", cairo.FONT_SLANT_NORMAL, cairo.FONT_WEIGHT_NORMAL)
		cr.SetFontSize(10)
		cr.MoveTo(4, 11)
		// TRANSLATORS: the chart's scale: the largest amount in one bar, e.g. "peak 1.2 MB per 1m0s"
		cr.ShowText(fmt.Sprintf(i18n.T("peak %s per %s"), glib.FormatSize(peak), shortDuration(r.bucket)))
	}
	if n > 0 && !c.from.IsZero() {
		// The time axis: where the window starts, and its end.
		cr.SetSourceRGBA(0.3, 0.3, 0.3, 0.9)
		cr.SelectFontFace("sans-serif", cairo.FONT_SLANT_NORMAL, cairo.FONT_WEIGHT_NORMAL)
		cr.SetFontSize(10)
		cr.MoveTo(4, h-4)
		cr.ShowText(spanClock(c.from, r))
		end := spanClock(c.from.Add(time.Duration(n)*r.bucket), r)
		ext := cr.TextExtents(end)
		cr.MoveTo(w-ext.XAdvance-4, h-4)
		cr.ShowText(end)
	}
	// The span being dragged, or the one selected.
	var x0, x1 float64
	switch {
	case c.picking:
		x0, x1 = min(c.drag[0], c.drag[1]), max(c.drag[0], c.drag[1])
	case !c.sel[0].IsZero() && n > 0:
		total := float64(time.Duration(n) * r.bucket)
		x0 = float64(c.sel[0].Sub(c.from)) / total * w
		x1 = float64(c.sel[1].Sub(c.from)) / total * w
	}
	if x1 > x0 {
		cr.SetSourceRGBA(0.21, 0.52, 0.89, 0.18)
		cr.Rectangle(x0, 0, x1-x0, h)
		cr.Fill()
	}
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf(i18n.N("%d hour", "%d hours", int(d/time.Hour)), int(d/time.Hour))
	default:
		return fmt.Sprintf(i18n.N("%d minute", "%d minutes", int(d/time.Minute)), int(d/time.Minute))
	}
}
