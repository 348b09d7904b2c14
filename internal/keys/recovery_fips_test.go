package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// In FIPS mode recovery material is made with PBKDF2-HMAC-SHA-256 and
// AES-256-GCM only (CRY-11), binds its parameters like argon2id material,
// and material of either kind opens in either mode.
func TestCRY11_RecoveryMaterialInFIPSModeUsesApprovedAlgorithms(t *testing.T) {
	saved := recoveryParams
	recoveryParams.memory = 16 << 10
	t.Cleanup(func() { recoveryParams = saved })
	data := t.TempDir()
	k, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(filepath.Join(data, LocalKEKFile))
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("a passphrase long enough")
	old, err := RecoveryMaterial(k, pass)
	if err != nil {
		t.Fatal(err)
	}
	withFIPS(t, true)
	m, err := RecoveryMaterial(k, pass)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(m, &f); err != nil {
		t.Fatal(err)
	}
	if f["kdf"] != kdfPBKDF2 || f["pbkdf2_iterations"] != float64(recoveryIterations) {
		t.Fatalf("FIPS-mode material: kdf %v, iterations %v", f["kdf"], f["pbkdf2_iterations"])
	}
	for _, mat := range [][]byte{m, old} {
		text, err := OpenRecovery(mat, pass)
		if err != nil || !bytes.Equal(text, keyFile) {
			t.Fatalf("OpenRecovery in FIPS mode: %v", err)
		}
	}
	if _, err := OpenRecovery(m, []byte("a passphrase long enougH")); !errors.Is(err, ErrRecovery) {
		t.Errorf("wrong passphrase: %v", err)
	}
	for field, v := range map[string]any{"pbkdf2_iterations": float64(recoveryIterations / 4), "kdf": kdfArgon2, "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "argon2_time": 1} {
		c := map[string]any{}
		for k, x := range f {
			c[k] = x
		}
		c[field] = v
		b, _ := json.Marshal(c)
		if _, err := OpenRecovery(b, pass); !errors.Is(err, ErrRecovery) {
			t.Errorf("material with %s changed: %v, want ErrRecovery", field, err)
		}
	}
	withFIPS(t, false)
	if text, err := OpenRecovery(m, pass); err != nil || !bytes.Equal(text, keyFile) {
		t.Errorf("FIPS-mode material outside FIPS mode: %v", err)
	}

	// With the module enforced, a child makes and opens material, and opens
	// the material made before.
	if err := os.WriteFile(filepath.Join(data, "old.json"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCRY11_RecoveryChildUnderEnforcedModule$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=only", "CUSTODIA_RECOVERY_CHILD="+data)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCRY11_RecoveryChildUnderEnforcedModule") {
		t.Fatalf("child under fips140=only: %v\n%s", err, out)
	}
}

func TestCRY11_RecoveryChildUnderEnforcedModule(t *testing.T) {
	data := os.Getenv("CUSTODIA_RECOVERY_CHILD")
	if data == "" {
		t.Skip("run by TestCRY11_RecoveryMaterialInFIPSModeUsesApprovedAlgorithms")
	}
	if !fipsEnabled() {
		t.Fatal("the FIPS 140-3 module is not on in the child")
	}
	k, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("a passphrase long enough")
	m, err := RecoveryMaterial(k, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m, []byte(kdfPBKDF2)) {
		t.Fatalf("material under the enforced module is not PBKDF2: %s", m)
	}
	keyFile, _ := os.ReadFile(filepath.Join(data, LocalKEKFile))
	old, _ := os.ReadFile(filepath.Join(data, "old.json"))
	for _, mat := range [][]byte{m, old} {
		if text, err := OpenRecovery(mat, pass); err != nil || !bytes.Equal(text, keyFile) {
			t.Fatalf("OpenRecovery under the enforced module: %v", err)
		}
	}
}
