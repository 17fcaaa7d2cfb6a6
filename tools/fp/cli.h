/* Shared helpers for the fp subcommands (argument parsing, JSON/terminal output). */
#ifndef FP_CLI_H
#define FP_CLI_H

#include <stdio.h>

#define FP_CMD(name, fn, help) int fn(int argc, char **argv);
#include "commands.def"
#undef FP_CMD

/* Prints "fp NAME: <fp_errmsg()>" to stderr and returns exit code 1. */
int fp_cli_fail(const char *cmd, int err);

/* Option helpers: looks for --name VALUE or --name=VALUE in argv[1..argc-1].
 * Returns the value or NULL. fp_cli_flag returns 1 if --name is present. */
const char *fp_cli_opt(int argc, char **argv, const char *name);
int fp_cli_flag(int argc, char **argv, const char *name);

/* 1 if stderr is a terminal and progress lines should be drawn. */
int fp_cli_tty(void);

#endif
