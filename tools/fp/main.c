/* fp: the fedproxy command line. Dispatches to one function per subcommand. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fedproxy/error.h"

struct fp_cmd {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
};

static const struct fp_cmd commands[] = {
#define FP_CMD(name, fn, help) {name, fn, help},
#include "commands.def"
#undef FP_CMD
};

static void usage(FILE *f)
{
    fprintf(f, "usage: fp COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'fp COMMAND --help' for a command's options.\n");
}

int fp_cli_fail(const char *cmd, int err)
{
    const char *m = fp_errmsg();
    fprintf(stderr, "fp %s: %s\n", cmd, m && m[0] ? m : fp_strerror(err));
    return 1;
}

const char *fp_cli_opt(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], name, n) == 0) {
            if (argv[i][n] == '=')
                return argv[i] + n + 1;
            if (argv[i][n] == '\0' && i + 1 < argc)
                return argv[i + 1];
        }
    }
    return NULL;
}

int fp_cli_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int fp_cli_tty(void) { return isatty(2); }

int fp_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("fedproxy %s\n", FP_VERSION_STRING);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "fp: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
