package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script for bash, zsh or fish. Commands, flags and their fixed values
complete; node names complete from etcd (with the same --etcd-* flags or SKEIN_* variables).`,
		Example: `  source <(skein completion bash)                                  # this shell
  skein completion bash > /etc/bash_completion.d/skein              # every bash (needs bash-completion)
  skein completion zsh > "${fpath[1]}/_skein"                       # zsh (compinit must be enabled)
  skein completion fish > ~/.config/fish/completions/skein.fish`,
		Args:                  cobra.ExactArgs(1),
		ValidArgs:             []string{"bash", "zsh", "fish"},
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return fmt.Errorf("shell %q: want bash, zsh or fish", args[0])
		},
	}
}
