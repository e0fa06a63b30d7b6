package monitor

import (
	"github.com/gotk3/gotk3/cairo"
	"github.com/gotk3/gotk3/gdk"

	"github.com/tattlefw/tattle/app/tattle/flows"
)

// sparkW and sparkH are the size of an application row's activity sparkline, in pixels.
const sparkW, sparkH = 60, 16

// sparkPixbuf renders a history into a new pixbuf (gdk_pixbuf_new owns the pixels; rows may be padded).
func sparkPixbuf(history []uint64) *gdk.Pixbuf {
	img := flows.Sparkline(history, sparkW, sparkH, [3]byte{0x35, 0x84, 0xe4})
	pb, err := gdk.PixbufNew(gdk.COLORSPACE_RGB, true, 8, sparkW, sparkH)
	if err != nil {
		return nil
	}
	px, stride := pb.GetPixels(), pb.GetRowstride()
	for y := 0; y < sparkH; y++ {
		copy(px[y*stride:y*stride+sparkW*4], img[y*sparkW*4:(y+1)*sparkW*4])
	}
	return pb
}

// drawHistory draws an activity history as a filled line chart.
func drawHistory(cr *cairo.Context, w, h float64, hist []uint64) {
	cr.SetSourceRGBA(0.5, 0.5, 0.5, 0.15)
	cr.Rectangle(0, 0, w, h)
	cr.Fill()
	var peak uint64
	for _, v := range hist {
		peak = max(peak, v)
	}
	if peak == 0 || len(hist) < 2 {
		return
	}
	step := w / float64(len(hist)-1)
	cr.MoveTo(0, h)
	for i, v := range hist {
		cr.LineTo(float64(i)*step, h-2-float64(v)/float64(peak)*(h-4))
	}
	cr.LineTo(w, h)
	cr.ClosePath()
	cr.SetSourceRGBA(0.21, 0.52, 0.89, 0.35)
	cr.FillPreserve()
	cr.SetSourceRGB(0.21, 0.52, 0.89)
	cr.SetLineWidth(1.5)
	cr.Stroke()
}
