package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestACL07_ServeRefusesBadTrustedProxy(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "fresh")
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"serve", "--data", fresh, "--trusted-proxy", "10.0.0.0/33"}, `--trusted-proxy "10.0.0.0/33": not a CIDR range`},
		{nil, []string{"serve", "--data", fresh, "--trusted-proxy", "10.0.0.1/8"}, "did you mean 10.0.0.0/8?"},
		{nil, []string{"serve", "--data", fresh, "--trusted-proxy", "10.0.0.0/8,proxy.internal"}, "not an address or CIDR range"},
		{nil, []string{"serve", "--data", fresh, "--trusted-proxy", "0.0.0.0/0"}, "trusting every address"},
		{map[string]string{"CUSTODIA_TRUSTED_PROXY": "::/0"}, []string{"serve", "--data", fresh}, "trusting every address"},
	} {
		r := run(t, tc.env, "", tc.args...)
		checkOneLineError(t, r, tc.want)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("refused settings created %s", fresh)
	}
}
