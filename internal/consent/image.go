package consent

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/jpeg"
	"image/png"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// Bounds of a section's image (docs/limits.md).
const (
	MaxImage     = 256 << 10
	MaxImageSide = 2000
)

// Image types a section's image may be, by its content.
const (
	ImagePNG  = "image/png"
	ImageJPEG = "image/jpeg"
)

// sectionImage checks a section's image by its content: a PNG or JPEG
// within bounds, given as base64 or a data: URL, whatever it claims to be.
// It answers the image decoded and encoded again in its own format, so
// that nothing but its pixels is kept (no metadata, no trailing data),
// as base64, with its type.
func sectionImage(where, s string) (string, string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", nil
	}
	if i := strings.Index(s, ";base64,"); strings.HasPrefix(s, "data:") && i > 0 {
		s = s[i+len(";base64,"):]
	}
	bad := errs.E(errs.Invalid, "%s.image must be a PNG or JPEG image of at most %dx%d pixels and %d KiB, in base64", where, MaxImageSide, MaxImageSide, MaxImage>>10)
	if len(s) > MaxImage*4/3+4 {
		return "", "", bad
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) > MaxImage {
		return "", "", bad
	}
	var kind string
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		kind = ImagePNG
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		kind = ImageJPEG
	default:
		return "", "", bad
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide {
		return "", "", bad
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return "", "", bad
	}
	var out bytes.Buffer
	if kind == ImagePNG {
		err = png.Encode(&out, img)
	} else {
		err = jpeg.Encode(&out, img, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		return "", "", errs.Wrap(errs.Internal, err, "encode the image")
	}
	if out.Len() > MaxImage {
		return "", "", bad
	}
	return base64.StdEncoding.EncodeToString(out.Bytes()), kind, nil
}
