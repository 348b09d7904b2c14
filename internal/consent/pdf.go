package consent

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"

	"github.com/custodia/custodia/internal/errs"
)

// The signed PDF is written with fpdf (codeberg.org/go-pdf/fpdf), the
// maintained pure-Go PDF writer, which embeds a TrueType font for UTF-8
// text: a name or a document in any script shows as typed. It is plain
// PDF, not PDF/A: fpdf writes no file identifier in the trailer, which
// PDF/A requires. Its output is deterministic: the document's dates are
// the signing time, so the same signature renders to the same bytes.

//go:embed font/DejaVuSansCondensed.ttf
var dejaVu []byte

// sheet is what a signed PDF shows: the document as shown (with its
// questions), and the record of the signature.
type sheet struct {
	Org, Study  string
	Participant string
	ConsentID   string
	Content     Content
	Record      record
}

// render writes a signature's PDF.
func render(s sheet) ([]byte, error) {
	r := s.Record
	signed := time.UnixMicro(r.SignedAt).UTC()
	modified := signed
	if r.CountersignedAt != 0 {
		modified = time.UnixMicro(r.CountersignedAt).UTC()
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCompression(true)
	pdf.SetCreationDate(signed)
	pdf.SetModificationDate(modified)
	pdf.SetCreator("Custodia", true)
	pdf.SetProducer("Custodia (fpdf)", true)
	pdf.SetLang(r.Language)
	pdf.AddUTF8FontFromBytes("dejavu", "", dejaVu)
	pdf.SetAutoPageBreak(true, 18)
	pdf.AliasNbPages("")
	pdf.SetFooterFunc(func() {
		pdf.SetY(-12)
		pdf.SetFont("dejavu", "", 7)
		pdf.CellFormat(0, 4, fmt.Sprintf("Consent %s · participant %s · page %d of {nb}", s.ConsentID, s.Participant, pdf.PageNo()), "", 0, "C", false, 0, "")
	})
	title := s.Content.Title
	if r.Kind == KindWithdrawal {
		title = "Withdrawal of consent: " + title
	}
	pdf.SetTitle(title, true)
	pdf.SetSubject(fmt.Sprintf("%s, %s version %d", s.Study, r.Language, r.Version), true)
	pdf.AddPage()

	heading := func(size float64, txt string) {
		pdf.SetFont("dejavu", "", size)
		pdf.MultiCell(0, size*0.5, txt, "", "L", false)
		pdf.Ln(1.5)
	}
	para := func(txt string) {
		pdf.SetFont("dejavu", "", 10)
		pdf.MultiCell(0, 5, txt, "", "L", false)
		pdf.Ln(2)
	}
	small := func(txt string) {
		pdf.SetFont("dejavu", "", 8)
		pdf.MultiCell(0, 4, txt, "", "L", false)
	}

	heading(16, title)
	small(fmt.Sprintf("%s — %s\nParticipant (pseudonym): %s\nDocument: language %s, version %d, SHA-256 %s",
		s.Org, s.Study, s.Participant, r.Language, r.Version, r.Digest))
	pdf.Ln(4)

	if r.Kind == KindWithdrawal {
		para("The participant withdraws their consent to take part in this study. From the time below, no further data are recorded about them where the study requires consent.")
	} else {
		for i, sec := range s.Content.Sections {
			heading(12, sec.Heading)
			para(sec.Text)
			if sec.Image != "" {
				if b, err := base64.StdEncoding.DecodeString(sec.Image); err == nil {
					opts := fpdf.ImageOptions{ImageType: "PNG"}
					if sec.ImageType == ImageJPEG {
						opts.ImageType = "JPG"
					}
					name := fmt.Sprintf("section-%d", i)
					pdf.RegisterImageOptionsReader(name, opts, bytes.NewReader(b))
					pdf.ImageOptions(name, pdf.GetX(), pdf.GetY()+1, 80, 0, true, opts, 0, "")
					pdf.Ln(2)
				}
			}
			if sec.ImageNote != "" {
				para("[Figure: " + sec.ImageNote + "]")
			}
		}
		if len(s.Content.Questions) > 0 {
			heading(12, "Questions and the answers given")
			for i, q := range s.Content.Questions {
				var b strings.Builder
				fmt.Fprintf(&b, "%d. %s\n", i+1, q.Text)
				for j, ch := range q.Choices {
					mark := "○"
					if i < len(r.Answers) && r.Answers[i] == j {
						mark = "●"
					}
					fmt.Fprintf(&b, "   %s %s\n", mark, ch)
				}
				para(strings.TrimRight(b.String(), "\n"))
			}
		}
	}

	heading(12, "Signatures")
	how := "in the participant portal, with the participant's own account, confirmed with its password or second factor"
	if r.Method == InPerson {
		how = "in person, in the session of the staff account " + r.SignedBy + ", confirmed with its password or second factor"
	}
	if r.Representative != nil {
		para(fmt.Sprintf("Signed for the participant %s by their legally authorized representative %s (%s), typed name, at %s, %s.",
			r.Name, r.Representative.Name, r.Representative.Relation, times(r.SignedAt), how))
	} else {
		para(fmt.Sprintf("Signed by the participant %s, typed name, at %s, %s.", r.Name, times(r.SignedAt), how))
	}
	if len(r.Drawing) > 0 {
		opts := fpdf.ImageOptions{ImageType: "PNG"}
		pdf.RegisterImageOptionsReader("drawn", opts, bytes.NewReader(r.Drawing))
		small("Drawn signature:")
		pdf.ImageOptions("drawn", pdf.GetX(), pdf.GetY()+1, 60, 0, true, opts, 0, "")
		pdf.Ln(3)
	}
	if r.CountersignedAt != 0 {
		para(fmt.Sprintf("Countersigned by the investigator %s (account %s), typed name, at %s.", r.Countersigner, r.CountersignedBy, times(r.CountersignedAt)))
	}
	var out bytes.Buffer
	if err := pdf.Output(&out); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "write the signed consent's PDF")
	}
	return out.Bytes(), nil
}
