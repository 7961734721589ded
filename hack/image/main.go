// Command image builds Hookline's container image with nothing but Go: no
// container engine, no registry. It cross-compiles cmd/manager and
// cmd/dispatcher for Linux with cgo off, puts them on an empty base with a
// minimal /etc/passwd and /etc/group for the nonroot user (and the build
// machine's CA bundle when one is found), and writes a tarball that
// `docker load`, `podman load`, `kind load image-archive` and
// `crane push` accept:
//
//	go run ./hack/image -version v0.1.0 -o bin/hookline-image.tar
//
// The image matches what the Dockerfile builds: /manager (the entrypoint)
// and /dispatcher, run as 65532:65532. Layers carry fixed timestamps
// ($SOURCE_DATE_EPOCH, else the Unix epoch), so the same sources and
// toolchain give the same image.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// modulePath is Hookline's module; the binaries are built by import
	// path so the command works from any directory inside the module.
	modulePath = "github.com/hookline/hookline"
	// nonrootID is the user and group the image runs as, the same as
	// distroless's "nonroot" and the dispatcher pods' runAsUser.
	nonrootID = 65532
	// caBundlePath is where Go's crypto/x509 looks first on Linux.
	caBundlePath = "etc/ssl/certs/ca-certificates.crt"
	// caBundleAuto and caBundleNone are the -ca-bundle values that are not
	// paths.
	caBundleAuto = "auto"
	caBundleNone = "none"
)

// binaries are the commands the image holds, each at /<name>. The first is
// the entrypoint; the operator starts dispatcher pods from the same image
// with the command /dispatcher.
var binaries = []string{"manager", "dispatcher"}

// standardCABundles are where Linux distributions keep the system's CA
// bundle, in the order Go's crypto/x509 tries them.
var standardCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// options say what to build and where to write it.
type options struct {
	output     string
	arch       string
	version    string
	repository string
	source     string
	caBundle   string
	goCmd      string
	// gzipLevel compresses the layers; 0 stores them as they are.
	gzipLevel int
	created   time.Time
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(context.Background(), os.Args[1:], log); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// run parses args and builds the image.
func run(ctx context.Context, args []string, log *slog.Logger) error {
	opts, err := parseOptions(args, os.Getenv)
	if err != nil {
		return err
	}
	return build(ctx, opts, log)
}

// parseOptions reads the command line; getenv supplies $SOURCE_DATE_EPOCH
// and $GO.
func parseOptions(args []string, getenv func(string) string) (options, error) {
	fset := flag.NewFlagSet("image", flag.ContinueOnError)
	var opts options
	fset.StringVar(&opts.output, "o", "bin/hookline-image.tar", "Path of the image tarball to write.")
	fset.StringVar(&opts.arch, "arch", "amd64", "GOARCH of the binaries and the image's architecture.")
	fset.StringVar(&opts.version, "version", "dev", "Version stamped into the binaries, the image tag and its labels.")
	fset.StringVar(&opts.repository, "repository", "ghcr.io/hookline/hookline", "Repository of the image's tag; the manager's default dispatcher image is this repository at the same version.")
	fset.StringVar(&opts.source, "source", "https://github.com/hookline/hookline", "Value of the org.opencontainers.image.source label.")
	fset.StringVar(&opts.caBundle, "ca-bundle", caBundleAuto,
		"PEM CA bundle to install at /"+caBundlePath+": a path, \"auto\" for the build machine's bundle if it has one at a standard path, or \"none\".")
	fset.IntVar(&opts.gzipLevel, "gzip-level", gzip.BestSpeed,
		"Gzip level of the layers, 0 to 9; 0 stores them uncompressed, the quickest for a local `docker load` or `kind load image-archive`.")
	goCmd := getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	fset.StringVar(&opts.goCmd, "go", goCmd, "Go command that builds the binaries; defaults to $GO, else go.")
	if err := fset.Parse(args); err != nil {
		return options{}, err
	}
	if fset.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fset.Args())
	}
	if opts.arch == "" || opts.version == "" || opts.output == "" {
		return options{}, errors.New("-arch, -version and -o must not be empty")
	}
	if opts.gzipLevel < gzip.NoCompression || opts.gzipLevel > gzip.BestCompression {
		return options{}, fmt.Errorf("-gzip-level %d is not between 0 and 9", opts.gzipLevel)
	}
	created, err := sourceDate(getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return options{}, err
	}
	opts.created = created
	return opts, nil
}

// sourceDate is the time written into layers and the image config: the
// reproducible-builds convention $SOURCE_DATE_EPOCH (seconds since the
// epoch) when set, else the epoch itself, so that rebuilding the same
// sources never changes the digest by the clock alone.
func sourceDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a count of seconds", epoch)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// build compiles the binaries, assembles the image and writes the tarball.
func build(ctx context.Context, opts options, log *slog.Logger) error {
	tag, err := name.NewTag(opts.repository + ":" + opts.version)
	if err != nil {
		return fmt.Errorf("making the image tag from -repository and -version: %w", err)
	}
	bundle, bundleSource, err := loadCABundle(opts.caBundle, standardCABundles)
	if err != nil {
		return err
	}
	if bundle == nil {
		log.Warn("Building without a CA bundle; the binaries must carry their own roots to verify public HTTPS endpoints")
	} else {
		log.Info("Installing a CA bundle", "source", bundleSource)
	}

	work, err := os.MkdirTemp("", "hookline-image-")
	if err != nil {
		return fmt.Errorf("creating a work directory: %w", err)
	}
	defer os.RemoveAll(work)

	log.Info("Building binaries", "arch", opts.arch, "version", opts.version)
	binDir := filepath.Join(work, "bin")
	if err := compile(ctx, opts, binDir); err != nil {
		return err
	}
	img, err := assemble(opts, bundle, binDir, work)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(opts.output); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the output directory: %w", err)
		}
	}
	if err := tarball.WriteToFile(opts.output, tag, img); err != nil {
		return fmt.Errorf("writing the image tarball %s: %w", opts.output, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("computing the image digest: %w", err)
	}
	log.Info("Wrote the image", "path", opts.output, "tag", tag.String(), "digest", digest.String())
	return nil
}

// compile cross-builds the binaries into dir, statically (cgo off), with
// paths trimmed and the version stamped, as the Dockerfile does.
func compile(ctx context.Context, opts options, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the binaries' directory: %w", err)
	}
	args := []string{"build", "-trimpath",
		"-ldflags", "-s -w -X " + modulePath + "/internal/version.Version=" + opts.version,
		// A trailing separator makes go build write each command into the
		// directory under its own name.
		"-o", dir + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, modulePath+"/cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, opts.goCmd, args...)
	// Later entries win, so these override whatever the caller exported.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+opts.arch)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s for linux/%s: %w\n%s", strings.Join(binaries, " and "), opts.arch, err, stderr.Bytes())
	}
	return nil
}

// loadCABundle returns the PEM bundle choice names (a path, caBundleAuto
// or caBundleNone) and where it came from; nil when there is none. With
// caBundleAuto the first of candidates that exists is used, and finding
// none is fine. A bundle without a single certificate is refused: an image
// whose roots silently fail to parse would fail every HTTPS delivery.
func loadCABundle(choice string, candidates []string) ([]byte, string, error) {
	switch choice {
	case caBundleNone, "":
		return nil, "", nil
	case caBundleAuto:
		for _, p := range candidates {
			if _, err := os.Stat(p); err == nil {
				return readCABundle(p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, "", fmt.Errorf("looking for a CA bundle at %s: %w", p, err)
			}
		}
		return nil, "", nil
	default:
		return readCABundle(choice)
	}
}

func readCABundle(path string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading the CA bundle: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, "", fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return b, path, nil
}

// assemble makes the image from the compiled binaries in binDir: a base
// layer with the user database (and bundle, when not nil), a layer with
// the binaries, and the run configuration. work holds the layer files
// until the tarball is written.
func assemble(opts options, bundle []byte, binDir, work string) (v1.Image, error) {
	base, err := layerFromEntries(filepath.Join(work, "base.tar"), baseEntries(bundle), opts.created, opts.gzipLevel)
	if err != nil {
		return nil, fmt.Errorf("making the base layer: %w", err)
	}
	var bins []entry
	for _, b := range binaries {
		bins = append(bins, entry{name: b, mode: 0o755, uid: nonrootID, gid: nonrootID, path: filepath.Join(binDir, b)})
	}
	binLayer, err := layerFromEntries(filepath.Join(work, "binaries.tar"), bins, opts.created, opts.gzipLevel)
	if err != nil {
		return nil, fmt.Errorf("making the binaries layer: %w", err)
	}
	img, err := mutate.Append(empty.Image,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: opts.created}, CreatedBy: "hack/image: user database and CA bundle"}},
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: v1.Time{Time: opts.created}, CreatedBy: "hack/image: " + strings.Join(binaries, ", ")}},
	)
	if err != nil {
		return nil, fmt.Errorf("adding the layers: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = opts.arch
	cfg.Created = v1.Time{Time: opts.created}
	cfg.Config = imageConfig(opts)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting the image config: %w", err)
	}
	return img, nil
}

// imageConfig is how the image runs: the manager as the nonroot user from
// /, with the OCI labels that tell where it comes from.
func imageConfig(opts options) v1.Config {
	return v1.Config{
		User:       fmt.Sprintf("%d:%d", nonrootID, nonrootID),
		Entrypoint: []string{"/" + binaries[0]},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.source":  opts.source,
			"org.opencontainers.image.version": opts.version,
			"org.opencontainers.image.title":   "hookline",
		},
	}
}

// entry is one file or directory of a layer.
type entry struct {
	// name inside the image, without a leading slash; a trailing slash
	// makes a directory.
	name     string
	mode     int64
	uid, gid int
	// data is the file's content, or path names a file to copy.
	data []byte
	path string
}

// passwd and group declare root, nobody and the nonroot user the image
// runs as: some libraries look the current user up, and tools such as
// `id` and `ls -l` in a debug container show names instead of numbers.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// baseEntries are the files every container of the image needs besides
// the binaries: the user database, the nonroot user's home, a /tmp that
// anyone may write (as on a usual root file system), and the CA bundle
// when there is one.
func baseEntries(bundle []byte) []entry {
	es := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: nonrootID, gid: nonrootID},
		{name: "tmp/", mode: 0o1777},
	}
	if bundle != nil {
		es = append(es,
			entry{name: "etc/ssl/", mode: 0o755},
			entry{name: "etc/ssl/certs/", mode: 0o755},
			entry{name: caBundlePath, mode: 0o644, data: bundle},
		)
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return es
}

// layerFromEntries writes entries as a tar file at path, every header
// stamped with modTime, and returns it as a layer gzipped at level. The
// compressed form is kept in memory: it is needed twice (for the digest,
// then for the tarball), and compressing twice would double the time.
func layerFromEntries(path string, entries []entry, modTime time.Time, level int) (v1.Layer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := writeEntries(f, entries, modTime); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("closing %s: %w", path, err)
	}
	layer, err := tarball.LayerFromFile(path, tarball.WithCompressionLevel(level), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("reading the layer %s: %w", path, err)
	}
	return layer, nil
}

func writeEntries(w io.Writer, entries []entry, modTime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: modTime,
			Format:  tar.FormatPAX,
		}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("writing the directory %s: %w", e.name, err)
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		if err := writeFile(tw, hdr, e); err != nil {
			return fmt.Errorf("writing %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the layer: %w", err)
	}
	return nil
}

func writeFile(tw *tar.Writer, hdr *tar.Header, e entry) error {
	if e.path == "" {
		hdr.Size = int64(len(e.data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(e.data)
		return err
	}
	f, err := os.Open(e.path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	hdr.Size = info.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
