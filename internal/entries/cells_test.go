package entries

import (
	"encoding/json"
	"reflect"
	"testing"
)

// An entry's packed values read back as written, whatever they hold, and
// as JSON that the database's views read; the packing PostgreSQL's
// migration writes (with spaces) reads too.
func TestPackedValuesReadBackAsWritten(t *testing.T) {
	in := []packedCell{
		{c: cell{"weight", 0}, value: "71.3", clear: true},
		{c: cell{"note", 0}, value: "a \"quoted\" \\ line\nand\ttab \x01 é 🙂 \u2028", clear: true},
		{c: cell{"empty", 0}, value: "", clear: true},
		{c: cell{"drug", 2}, value: "aspirin", clear: true},
		{c: cell{"drug", 10}},
		{c: cell{"status", 0}, sealed: "0001fe48"},
	}
	packed := packCells(append([]packedCell(nil), in...))
	var asJSON [][]any
	if err := json.Unmarshal([]byte(packed), &asJSON); err != nil || len(asJSON) != len(in) {
		t.Fatalf("not JSON: %s, %v", packed, err)
	}
	out, err := unpackCells(packed, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]packedCell(nil), in...)
	sortCells(want)
	if !reflect.DeepEqual(want, out) {
		t.Errorf("read back %+v\nwant %+v", out, want)
	}
	spaced := `[["drug", 2], ["status", 0, null, "0001fe48"], ["weight", 0, "71 \"kg\"\n"]]`
	out, err = unpackCells(spaced, nil)
	if err != nil || len(out) != 3 || !out[0].removed() || out[1].sealed != "0001fe48" || out[2].value != "71 \"kg\"\n" {
		t.Errorf("PostgreSQL's packing reads %+v, %v", out, err)
	}
	for _, bad := range []string{``, `[`, `[["a"]]`, `[["a",0,"x",]`, `[["a",0,"x","y"]]`, `{}`} {
		if _, err := unpackCells(bad, nil); err == nil {
			t.Errorf("%q read as packed values", bad)
		}
	}
}

func sortCells(cs []packedCell) { packCells(cs) }
