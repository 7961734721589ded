package main

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hookline/hookline/test/testenv"
)

// file is one entry of an image's flattened file system.
type file struct {
	hdr  *tar.Header
	data []byte
}

// imageFiles flattens img as a container runtime would and returns its
// entries by name, without a leading "/" or "./".
func imageFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading the image's file system: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		files[strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/")] = file{hdr: hdr, data: data}
	}
}

// testCABundle writes a PEM bundle with one self-signed certificate and
// returns its path and content.
func testCABundle(t *testing.T) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Hookline image test CA"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(0, 0).Add(100 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, pemBytes
}

// TestBuildImage builds the real binaries into an image tarball and checks
// what `docker load` and a container runtime would see.
func TestBuildImage(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the manager and the dispatcher")
	}
	const version = "v1.2.3-imagetest"
	bundlePath, bundle := testCABundle(t)
	out := filepath.Join(t.TempDir(), "out", "hookline-image.tar")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := testenv.Context(t)
	defer cancel()
	// Level 0 stores the layers in gzip's framing without compressing:
	// the race detector slows compress/flate tenfold, and what is checked
	// here is the layout, not the compression ratio.
	args := []string{"-o", out, "-arch", "amd64", "-version", version, "-ca-bundle", bundlePath, "-gzip-level", "0"}
	if err := run(ctx, args, log); err != nil {
		t.Fatalf("building the image: %v", err)
	}

	const wantTag = "ghcr.io/hookline/hookline:" + version
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatalf("reading the tarball's manifest: %v", err)
	}
	if len(manifest) != 1 || !cmp.Equal(manifest[0].RepoTags, []string{wantTag}) {
		t.Fatalf("tarball manifest = %+v, want one image tagged %s", manifest, wantTag)
	}
	tag, err := name.NewTag(wantTag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("loading the image: %v", err)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("reading the image config: %v", err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	wantConfig := v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.source":  "https://github.com/hookline/hookline",
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.title":   "hookline",
		},
	}
	if diff := cmp.Diff(wantConfig, cfg.Config); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
	if !cfg.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created = %s, want the epoch (no $SOURCE_DATE_EPOCH in the test)", cfg.Created.Time)
	}

	files := imageFiles(t, img)
	for _, bin := range []string{"manager", "dispatcher"} {
		f, ok := files[bin]
		if !ok {
			t.Errorf("/%s missing from the image", bin)
			continue
		}
		if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o7777 != 0o755 || f.hdr.Uid != 65532 || f.hdr.Gid != 65532 {
			t.Errorf("/%s: type %q mode %o owner %d:%d, want a regular file, mode 755, owner 65532:65532",
				bin, f.hdr.Typeflag, f.hdr.Mode&0o7777, f.hdr.Uid, f.hdr.Gid)
		}
		exe, err := elf.NewFile(bytes.NewReader(f.data))
		if err != nil {
			t.Errorf("/%s is not an ELF file: %v", bin, err)
			continue
		}
		if exe.Class != elf.ELFCLASS64 || exe.Machine != elf.EM_X86_64 || exe.Type != elf.ET_EXEC {
			t.Errorf("/%s: ELF class %v machine %v type %v, want a 64-bit x86-64 executable", bin, exe.Class, exe.Machine, exe.Type)
		}
		// A dynamically linked binary (cgo left on) names an interpreter
		// that the empty base lacks.
		for _, p := range exe.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("/%s is dynamically linked; the image has no loader", bin)
			}
		}
		if !bytes.Contains(f.data, []byte(version)) {
			t.Errorf("/%s does not carry the version %s", bin, version)
		}
	}

	for path, want := range map[string]string{
		"etc/passwd":                        passwd,
		"etc/group":                         group,
		"etc/ssl/certs/ca-certificates.crt": string(bundle),
	} {
		f, ok := files[path]
		if !ok {
			t.Errorf("/%s missing from the image", path)
			continue
		}
		if string(f.data) != want {
			t.Errorf("/%s = %q, want %q", path, f.data, want)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].data), "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks the nonroot user 65532")
	}
	if f, ok := files["tmp"]; !ok || f.hdr.Typeflag != tar.TypeDir || f.hdr.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp missing or not a world-writable sticky directory")
	}
}

// TestBaseEntriesWithoutBundle checks that the base layer needs no CA
// bundle: without one it holds the user database and directories only.
func TestBaseEntriesWithoutBundle(t *testing.T) {
	var buf bytes.Buffer
	if err := writeEntries(&buf, baseEntries(nil), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %s, want the epoch", hdr.Name, hdr.ModTime)
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "tmp/"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("base layer entries (-want +got):\n%s", diff)
	}
}

func TestLoadCABundle(t *testing.T) {
	dir := t.TempDir()
	validPath, valid := testCABundle(t)
	notPEM := filepath.Join(dir, "not-pem.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")

	tests := []struct {
		name       string
		choice     string
		candidates []string
		want       []byte
		wantSource string
		wantErr    bool
	}{
		{name: "none", choice: "none", candidates: []string{validPath}},
		{name: "empty means none", choice: "", candidates: []string{validPath}},
		{name: "auto takes the first that exists", choice: "auto", candidates: []string{missing, validPath, notPEM}, want: valid, wantSource: validPath},
		{name: "auto without any is fine", choice: "auto", candidates: []string{missing}},
		{name: "auto refuses a bundle without certificates", choice: "auto", candidates: []string{notPEM, validPath}, wantErr: true},
		{name: "path", choice: validPath, want: valid, wantSource: validPath},
		{name: "missing path", choice: missing, wantErr: true},
		{name: "path without certificates", choice: notPEM, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, source, err := loadCABundle(tt.choice, tt.candidates)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) || source != tt.wantSource {
				t.Errorf("got %d bytes from %q, want %d bytes from %q", len(got), source, len(tt.want), tt.wantSource)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    options
		wantErr bool
	}{
		{
			name: "defaults",
			want: options{output: "bin/hookline-image.tar", arch: "amd64", version: "dev", repository: "ghcr.io/hookline/hookline",
				source: "https://github.com/hookline/hookline", caBundle: "auto", goCmd: "go", gzipLevel: 1, created: time.Unix(0, 0).UTC()},
		},
		{
			name: "flags and environment",
			args: []string{"-o", "x.tar", "-arch", "arm64", "-version", "v0.3.0", "-ca-bundle", "none", "-gzip-level", "9"},
			env:  map[string]string{"SOURCE_DATE_EPOCH": "1700000000", "GO": "/opt/go/bin/go"},
			want: options{output: "x.tar", arch: "arm64", version: "v0.3.0", repository: "ghcr.io/hookline/hookline",
				source: "https://github.com/hookline/hookline", caBundle: "none", goCmd: "/opt/go/bin/go", gzipLevel: 9, created: time.Unix(1700000000, 0).UTC()},
		},
		{name: "bad SOURCE_DATE_EPOCH", env: map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, wantErr: true},
		{name: "negative SOURCE_DATE_EPOCH", env: map[string]string{"SOURCE_DATE_EPOCH": "-1"}, wantErr: true},
		{name: "stray argument", args: []string{"bin/x.tar"}, wantErr: true},
		{name: "empty version", args: []string{"-version", ""}, wantErr: true},
		{name: "gzip level out of range", args: []string{"-gzip-level", "10"}, wantErr: true},
		{name: "unknown flag", args: []string{"-platform", "linux/amd64"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOptions(tt.args, func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(options{})); !tt.wantErr && diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}
