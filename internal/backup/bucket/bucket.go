// Package bucket keeps backups in a bucket of an S3-compatible object
// store (AWS S3, MinIO, Ceph, Garage, …): a backup.Target, apart from the
// backup package so that what reads the record of backups does not import
// an HTTP client.
package bucket

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/errs"
)

// ParseTarget reads --to: a folder, or s3+https://HOST[:PORT]/BUCKET[/PREFIX]
// (?region=…) whose credentials come from the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
// Plain s3+http:// is accepted only on this machine.
func ParseTarget(to string, getenv func(string) string) (backup.Target, error) {
	if !strings.HasPrefix(to, "s3+") {
		return backup.Dir(to)
	}
	u, err := url.Parse(to)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, errs.E(errs.Invalid, "the backup target %q is not s3+https://HOST/BUCKET[/PREFIX] (credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", redactURL(to))
	}
	secure := u.Scheme == "s3+https"
	if !secure {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if u.Scheme != "s3+http" || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return nil, errs.E(errs.Invalid, "the backup target %s: use s3+https:// (plain s3+http:// only on this machine)", redactURL(to))
		}
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if bucket == "" {
		return nil, errs.E(errs.Invalid, "the backup target %s names no bucket", redactURL(to))
	}
	access, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if access == "" || secret == "" {
		return nil, errs.E(errs.Invalid, "the backup target %s needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment", redactURL(to))
	}
	region := u.Query().Get("region")
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, getenv("AWS_SESSION_TOKEN")),
		Secure: secure, Region: region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, errs.E(errs.Invalid, "the backup target %s: %s", redactURL(to), err)
	}
	base := u.Scheme + "://" + u.Host + "/" + bucket
	if prefix != "" {
		base += "/" + prefix
	}
	return &s3Target{c: c, bucket: bucket, prefix: prefix, base: base}, nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// s3Target is a bucket, and a prefix of its keys, of an S3-compatible
// object store.
type s3Target struct {
	c              *minio.Client
	bucket, prefix string
	base           string // the location of the prefix
}

func (s *s3Target) Staging() string { return "" }
func (s *s3Target) String() string  { return s.base }

func (s *s3Target) key(name string) string { return path.Join(s.prefix, name) }

func (s *s3Target) Put(ctx context.Context, file, name string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if _, err := s.c.PutObject(ctx, s.bucket, s.key(name), f, fi.Size(), minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return "", errs.E(errs.Unavailable, "upload the backup to %s: %s", s.base, err)
	}
	f.Close()
	os.Remove(file)
	return s.base + "/" + name, nil
}

func (s *s3Target) Holds(location string) bool {
	return strings.HasPrefix(location, s.base+"/") && !strings.Contains(strings.TrimPrefix(location, s.base+"/"), "/")
}

func (s *s3Target) Remove(ctx context.Context, location string) error {
	if !s.Holds(location) {
		return fmt.Errorf("%s is not a backup of %s", location, s.base)
	}
	if err := s.c.RemoveObject(ctx, s.bucket, s.key(path.Base(location)), minio.RemoveObjectOptions{}); err != nil {
		return errs.E(errs.Unavailable, "remove an old backup from %s: %s", s.base, err)
	}
	return nil
}
