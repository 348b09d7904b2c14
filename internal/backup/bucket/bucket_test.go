package bucket_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/backup/bucket"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestAVL01_BackupsGoToAnS3CompatibleBucket: the schedule writes backups
// into a bucket of an S3-compatible store (gofakes3, an in-process S3
// server: no S3 server can be installed on this machine), keeps the
// newest Keep there, and what it uploaded opens and checks as a backup.
// Credentials come from the environment; a plain-HTTP store elsewhere
// than this machine is refused.
func TestAVL01_BackupsGoToAnS3CompatibleBucket(t *testing.T) {
	ctx := context.Background()
	mem := s3mem.New()
	if err := mem.CreateBucket("backups"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(mem).Server())
	defer srv.Close()
	env := map[string]string{"AWS_ACCESS_KEY_ID": "custodia", "AWS_SECRET_ACCESS_KEY": "a-secret-of-the-store"}
	getenv := func(k string) string { return env[k] }
	to := "s3+http://" + strings.TrimPrefix(srv.URL, "http://") + "/backups/nightly"

	for bad, want := range map[string]string{
		"s3+http://s3.example.org/backups":       "only on this machine",
		"s3+https://s3.example.org/":             "names no bucket",
		"s3+https://key:secret@s3.example.org/b": "not s3+https://HOST/BUCKET",
		"/no/such/folder":                        "does not exist",
	} {
		if _, err := bucket.ParseTarget(bad, getenv); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("target %q: %v, want %q", bad, err, want)
		}
	}
	if _, err := bucket.ParseTarget(to, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("without credentials: %v", err)
	}
	target, err := bucket.ParseTarget(to, getenv)
	if err != nil {
		t.Fatal(err)
	}

	clinical := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	identity := sqldbtest.Open(t, sqldb.SQLite, sqldb.Identity)
	skey, vkey, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	secret, public, err := backup.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rs, names, _ := backup.ParseRecipients(public)
	s := &backup.Schedule{
		Source:     backup.Source{Instance: "test", Clinical: clinical, Identity: identity, Signer: signer},
		Recipients: rs, Names: names, Target: target, Every: time.Hour, Keep: 1, Holder: "node",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Record: func(ctx context.Context, res backup.Result) error {
			return clinical.InTx(ctx, func(tx *sql.Tx) error { return backup.Record(ctx, tx, res) })
		},
		Removed: func(ctx context.Context, loc string) error {
			return clinical.InTx(ctx, func(tx *sql.Tx) error { return backup.MarkRemoved(ctx, tx, loc) })
		},
	}
	for range 2 {
		if _, err := clinical.ExecContext(ctx, `UPDATE backups SET created_at = created_at - $1`, int64(2*time.Hour/time.Microsecond)); err != nil {
			t.Fatal(err)
		}
		if err := s.Turn(ctx); err != nil {
			t.Fatal(err)
		}
	}
	list, err := mem.ListBucket("backups", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 1 || !strings.HasPrefix(list.Contents[0].Key, "nightly/custodia-test-") {
		t.Fatalf("the bucket holds %d objects, want the newest backup only", len(list.Contents))
	}
	last, ok, err := backup.Latest(ctx, clinical)
	if err != nil || !ok || last.Location != to+"/"+filepath.Base(list.Contents[0].Key) {
		t.Fatalf("the newest backup recorded: %+v %v, the object %s", last, err, list.Contents[0].Key)
	}

	resp, err := http.Get(srv.URL + "/backups/" + list.Contents[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "downloaded")
	f, _ := os.Create(file)
	io.Copy(f, resp.Body)
	resp.Body.Close()
	f.Close()
	b, err := backup.Open(file, verifier)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ids, err := backup.ParseKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := b.CheckAll(ids); err != nil || sum.Tables["clinical"] < 30 {
		t.Errorf("the uploaded backup: %+v %v", sum, err)
	}
}
