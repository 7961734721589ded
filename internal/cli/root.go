package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/version"
)

// Options are what the plugin needs from its surroundings.
type Options struct {
	// Streams are stdin, stdout and stderr.
	Streams genericiooptions.IOStreams
	// Clock tells the time for ages, replay windows, rotation requests,
	// signature checks and waits; the real clock when nil.
	Clock clock.Clock
}

// Run runs kubectl hookline with args (without the program name) and returns
// the process exit code. Errors are printed on Options.Streams.ErrOut as one
// line starting with "error: ".
func Run(ctx context.Context, args []string, opts Options) int {
	cmd := NewCommand(opts)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		if msg := oneLine(err.Error()); msg != "" {
			fmt.Fprintln(opts.Streams.ErrOut, "error: "+msg)
		}
	}
	return exitCode(err)
}

// rootLong documents the exit codes; Run maps errors to them.
const rootLong = `kubectl hookline works with Hookline, the Kubernetes operator for outgoing
webhooks: publish events and test deliveries, see the delivery health of
subscriptions, rotate signing keys, replay dead-lettered deliveries and
verify captured requests.

The usual kubectl flags (--kubeconfig, --context, -n/--namespace, ...)
select the cluster and the namespace.

Exit codes:
  0  success
  1  error (the API refused, could not be reached, an object is missing, ...)
  2  usage error (unknown flag, missing or bad argument)
  3  a verification failed, a test delivery did not succeed, or replayed
     deliveries were dead-lettered again
  4  timed out waiting (rotate, replay)`

// NewCommand returns the root command of kubectl hookline.
func NewCommand(opts Options) *cobra.Command {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	a := &app{
		in:     opts.Streams.In,
		out:    opts.Streams.Out,
		errOut: opts.Streams.ErrOut,
		clock:  opts.Clock,
		flags:  genericclioptions.NewConfigFlags(true),
	}
	root := &cobra.Command{
		Use:   "hookline",
		Short: "Send, inspect, rotate, replay and verify Hookline webhooks",
		Long:  rootLong,
		Example: `  # Publish an event, then see how the subscriptions of the namespace fare
  kubectl hookline send -n shop --type order.created --data '{"total":42}' --service-account checkout
  kubectl hookline status -n shop`,
		Annotations: map[string]string{
			// kubectl runs the binary kubectl-hookline; usage lines should
			// show what the user typed.
			cobra.CommandDisplayNameAnnotation: "kubectl hookline",
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q; see %s --help", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v; see %s --help", err, c.CommandPath())
	})
	a.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newSendCommand(a),
		newStatusCommand(a),
		newRotateCommand(a),
		newReplayCommand(a),
		newVerifyCommand(a),
		newVersionCommand(a),
	)
	return root
}

// app holds what the commands share: streams, clock, the kubeconfig flags,
// and the clients made from them on first use.
type app struct {
	in          io.Reader
	out, errOut io.Writer
	clock       clock.Clock
	flags       *genericclioptions.ConfigFlags

	cfg  *rest.Config
	kube kubernetes.Interface
	hl   *hooklineClient
}

// namespace is -n, else the kubeconfig context's namespace, else "default".
func (a *app) namespace() (string, error) {
	ns, _, err := a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the namespace from the kubeconfig: %w; pass -n NAMESPACE", err)
	}
	return ns, nil
}

func (a *app) restConfig() (*rest.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w; check --kubeconfig and --context", err)
	}
	cfg.UserAgent = "kubectl-hookline/" + version.Version
	a.cfg = cfg
	return cfg, nil
}

func (a *app) kubeClient() (kubernetes.Interface, error) {
	if a.kube != nil {
		return a.kube, nil
	}
	cfg, err := a.restConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a Kubernetes client: %w", err)
	}
	a.kube = kube
	return kube, nil
}

func (a *app) hooklineClient() (*hooklineClient, error) {
	if a.hl != nil {
		return a.hl, nil
	}
	cfg, err := a.restConfig()
	if err != nil {
		return nil, err
	}
	hl, err := newHooklineClient(cfg)
	if err != nil {
		return nil, err
	}
	a.hl = hl
	return hl, nil
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q; see %s --help", cmd.CommandPath(), strings.Join(args, " "), cmd.CommandPath())
	}
	return nil
}

// exactlyOneArg wants one positional argument, named what in the message.
func exactlyOneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch len(args) {
		case 1:
			return nil
		case 0:
			return usageErrorf("%s needs a %s; see %s --help", cmd.CommandPath(), what, cmd.CommandPath())
		default:
			return usageErrorf("%s takes one %s, got %d arguments; see %s --help", cmd.CommandPath(), what, len(args), cmd.CommandPath())
		}
	}
}

// changed says whether the user set a flag, as opposed to its default.
func changed(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
