package keys

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

type wycheproofAEAD struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		IVSize  int `json:"ivSize"`
		KeySize int `json:"keySize"`
		TagSize int `json:"tagSize"`
		Tests   []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Key     hexBytes `json:"key"`
			IV      hexBytes `json:"iv"`
			AAD     hexBytes `json:"aad"`
			Msg     hexBytes `json:"msg"`
			CT      hexBytes `json:"ct"`
			Tag     hexBytes `json:"tag"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// TestCRY04_WycheproofXChaCha20Poly1305 runs Project Wycheproof's vectors
// through the functions Seal, Open and the local key-encryption key use
// (newXChaCha, sealAEAD, openAEAD): valid vectors must encrypt to ct||tag
// and decrypt back; invalid ones (modified tags, edge cases, nonces of the
// wrong size) must fail to decrypt, and never panic.
func TestCRY04_WycheproofXChaCha20Poly1305(t *testing.T) {
	b, err := os.ReadFile("testdata/wycheproof/xchacha20_poly1305_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var suite wycheproofAEAD
	if err := json.Unmarshal(b, &suite); err != nil {
		t.Fatal(err)
	}
	if suite.Algorithm != "XCHACHA20-POLY1305" {
		t.Fatalf("algorithm %q", suite.Algorithm)
	}
	valid, invalid := 0, 0
	for _, g := range suite.TestGroups {
		if g.TagSize != 8*TagSize {
			t.Fatalf("group with %d-bit tags", g.TagSize)
		}
		for _, tc := range g.Tests {
			a, err := newXChaCha(tc.Key)
			if err != nil {
				t.Fatalf("tcId %d: key: %v", tc.TcID, err)
			}
			body := append(bytes.Clone(tc.CT), tc.Tag...)
			switch tc.Result {
			case "valid":
				valid++
				got, err := sealAEAD(a, nil, tc.IV, tc.Msg, tc.AAD)
				if err != nil {
					t.Errorf("tcId %d (%s): seal: %v", tc.TcID, tc.Comment, err)
					continue
				}
				if !bytes.Equal(got, body) {
					t.Errorf("tcId %d (%s): seal = %x, want %x", tc.TcID, tc.Comment, got, body)
				}
				pt, err := openAEAD(a, tc.IV, body, tc.AAD)
				if err != nil || !bytes.Equal(pt, tc.Msg) {
					t.Errorf("tcId %d (%s): open = %x, %v; want %x", tc.TcID, tc.Comment, pt, err, tc.Msg)
				}
			case "invalid":
				invalid++
				if pt, err := openAEAD(a, tc.IV, body, tc.AAD); err == nil {
					t.Errorf("tcId %d (%s, %v): invalid vector opened to %x", tc.TcID, tc.Comment, tc.Flags, pt)
				}
				if len(tc.IV) != NonceSize {
					if _, err := sealAEAD(a, nil, tc.IV, tc.Msg, tc.AAD); err == nil {
						t.Errorf("tcId %d: sealed with a %d-byte nonce", tc.TcID, len(tc.IV))
					}
				}
			default:
				t.Fatalf("tcId %d: result %q", tc.TcID, tc.Result)
			}
		}
	}
	t.Logf("%d valid and %d invalid vectors", valid, invalid)
	if valid == 0 || invalid == 0 || valid+invalid != suite.NumberOfTests {
		t.Fatalf("ran %d valid and %d invalid vectors, file declares %d", valid, invalid, suite.NumberOfTests)
	}
}
