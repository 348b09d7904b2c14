package consent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// pngOf is a small PNG image, with bytes after its end when trailing is
// set (which no image needs).
func pngOf(t *testing.T, trailing string) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 4))
	for x := range 8 {
		img.Set(x, x%4, color.RGBA{R: 200, A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	b.WriteString(trailing)
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// A consent document's sections may show an image (WEB-05): judged by its
// content, PNG or JPEG within bounds, encoded again so that only its
// pixels are kept, described in words for those who cannot see it, and
// in the signed PDF; anything else claiming to be one is refused and
// nothing is stored.
func TestWEB05_ConsentImagesAreCheckedAndShown(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		withImage := func(image, note string) consent.Content {
			c := document("With a figure")
			c.Sections[0].Image, c.Sections[0].ImageNote = image, note
			return c
		}
		gif := base64.StdEncoding.EncodeToString([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
		script := base64.StdEncoding.EncodeToString([]byte("<svg onload=alert(1)>"))
		for name, c := range map[string]consent.Content{
			"a GIF":                  withImage(gif, "a dot"),
			"a script":               withImage(script, "a picture"),
			"not base64":             withImage("%%%", "a picture"),
			"an image without words": withImage(pngOf(t, ""), ""),
		} {
			if _, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", c); errs.KindOf(err) != errs.Invalid {
				t.Errorf("%s: %v, want refused", name, err)
			}
		}
		if n := f.count(t, `SELECT count(*) FROM consent_versions`); n != 0 {
			t.Fatalf("%d versions stored after refusals", n)
		}
		v, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", withImage("data:image/png;base64,"+pngOf(t, "TRAILING-SECRET"), "A timeline of the three visits"))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := base64.StdEncoding.DecodeString(v.Content.Sections[0].Image)
		if err != nil || v.Content.Sections[0].ImageType != consent.ImagePNG || bytes.Contains(stored, []byte("TRAILING-SECRET")) {
			t.Fatalf("the image as stored: %s, %d bytes, %v", v.Content.Sections[0].ImageType, len(stored), err)
		}
		if _, err := png.Decode(bytes.NewReader(stored)); err != nil {
			t.Fatalf("the stored image does not decode: %v", err)
		}
		if v, err = f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "en", v.Digest, false); err != nil {
			t.Fatal(err)
		}
		c, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v.Version))
		if err != nil {
			t.Fatal(err)
		}
		_, pdf, err := f.svc.Download(ctx, f.self, "clinic", f.at(f.p), c.ID)
		if err != nil || !bytes.Contains(pdf, []byte("/Subtype /Image")) {
			t.Errorf("the signed PDF holds no image (%v)", err)
		}
	})
}
