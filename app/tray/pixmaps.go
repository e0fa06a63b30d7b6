package tray

import (
	"bytes"
	"embed"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"path/filepath"

	"github.com/tattlefw/tattle/app/xdg"
)

//go:generate sh pixmaps/gen.sh

// pixmapFiles are the fallback images of the default icons, rendered from data/icons by pixmaps/gen.sh.
//
//go:embed pixmaps/*.png
var pixmapFiles embed.FS

// pixmapSizes are the sizes rendered, smallest first; hosts pick the one closest to what they draw.
var pixmapSizes = [...]int{16, 24, 32, 48}

// loadPixmaps decodes the fallback images of a state ("normal", "question", "silent") into the protocol's
// ARGB32, network byte order, not premultiplied.
func loadPixmaps(state string) ([]pixmap, error) {
	var out []pixmap
	for _, size := range pixmapSizes {
		name := fmt.Sprintf("pixmaps/%s-%d.png", state, size)
		data, err := pixmapFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("tray: %w", err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tray: decoding %s: %w", name, err)
		}
		out = append(out, argb(img))
	}
	return out, nil
}

func argb(img image.Image) pixmap {
	b := img.Bounds()
	p := pixmap{Width: int32(b.Dx()), Height: int32(b.Dy()), Data: make([]byte, 0, 4*b.Dx()*b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			p.Data = append(p.Data, c.A, c.R, c.G, c.B)
		}
	}
	return p
}

// defaultPixmaps are the fallback images for each state whose icon is Tattle's own and cannot be found in
// an icon theme directory (the app runs uninstalled). Installed icons are left to the host: some hosts
// prefer pixmaps when both are given, and a themed symbolic icon is sharper and follows the panel's colours.
// An app that names icons of its own gets no images of Tattle's.
func defaultPixmaps(opts Options) ([3][]pixmap, error) {
	var p [3][]pixmap
	for _, s := range []struct {
		state State
		name  string
		icon  string
		def   string
	}{
		{Normal, "normal", opts.NormalIcon, IconNormal},
		{Question, "question", opts.QuestionIcon, IconQuestion},
		{Silent, "silent", opts.SilentIcon, IconSilent},
	} {
		p[s.state] = []pixmap{}
		if s.icon != s.def || iconInstalled(s.icon, opts.IconThemePath) {
			continue
		}
		images, err := loadPixmaps(s.name)
		if err != nil {
			return p, err
		}
		p[s.state] = images
	}
	return p, nil
}

// iconInstalled says whether a hicolor icon of that name is where desktops look for themed icons
// (XDG_DATA_HOME and XDG_DATA_DIRS, with the defaults of the XDG base directory specification), or in
// themePath.
func iconInstalled(name, themePath string) bool {
	var roots []string
	for _, d := range xdg.DataDirs() {
		roots = append(roots, filepath.Join(d, "icons"))
	}
	if themePath != "" {
		roots = append(roots, themePath)
	}
	for _, r := range roots {
		if m, _ := filepath.Glob(filepath.Join(r, "hicolor", "*", "apps", name+".*")); len(m) > 0 {
			return true
		}
	}
	return false
}
