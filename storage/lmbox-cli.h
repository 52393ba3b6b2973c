/*
 * lmbox-cli.h: what the command files of the lmbox admin tool share --
 * exit codes, the command table entry, store opening and error reporting,
 * number/date/flag formatting.  Internal to the CLI; not part of liblmbox.
 */
#ifndef LMBOX_CLI_H
#define LMBOX_CLI_H

#include <stdint.h>
#include "lmbox.h"

/* Exit codes (also in `lmbox --help` and docs/cli.md). */
enum lmbox_cli_exit {
	CLI_EXIT_OK = 0,       /* done; check: no problem found */
	CLI_EXIT_FAILED = 1,   /* problems found, or the operation failed */
	CLI_EXIT_USAGE = 2,    /* bad command line */
	CLI_EXIT_OPEN = 3,     /* the store cannot be opened */
	CLI_EXIT_NOTFOUND = 4, /* no such folder, message or UIDL */
};

struct cli_command {
	const char *name;
	const char *synopsis;  /* arguments after the command name */
	const char *summary;   /* one line for `lmbox --help` */
	const char *help;      /* the rest of `lmbox NAME --help` */
	int (*run)(const struct cli_command *cmd, int argc, char **argv);
};

extern const struct cli_command cli_cmd_stat;     /* lmbox-cli-inspect.c */
extern const struct cli_command cli_cmd_ls;
extern const struct cli_command cli_cmd_cat;
extern const struct cli_command cli_cmd_uidl;
extern const struct cli_command cli_cmd_check;    /* lmbox-cli-check.c */
extern const struct cli_command cli_cmd_compact;
extern const struct cli_command cli_cmd_import_maildir;
extern const struct cli_command cli_cmd_bench;

/* Help text shared by every command's --help. */
#define CLI_EXIT_HELP \
	"Exit status: 0 ok, 1 problem found or operation failed, 2 usage error,\n" \
	"3 store cannot be opened, 4 folder/message/UIDL not found.\n"

/* "lmbox CMD: <msg> (see lmbox CMD --help)" on stderr; returns CLI_EXIT_USAGE. */
int cli_usage(const struct cli_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "lmbox CMD: <msg>" on stderr. */
void cli_error(const struct cli_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Report a liblmbox failure on store (what: the operation) and return the
 * exit code for err. */
int cli_store_error(const struct cli_command *cmd, struct lmbox_store *store,
		    int err, const char *what);
/* Exit code for a liblmbox error code. */
int cli_exit_for(int err);

/* Open dir with opts (NULL: defaults) plus flags; on failure print why and
 * return CLI_EXIT_OPEN. */
int cli_store_open(const struct cli_command *cmd, const char *dir,
		   const struct lmbox_store_opts *opts, unsigned int flags,
		   struct lmbox_store **store_r);

/* 1 if arg is exactly name. */
int cli_opt_is(const char *arg, const char *name);
/* Parse argv (argv[0] = the command name): flags (NULL-terminated list of
 * option names, may be NULL) set flag_set[i]; up to max_pos positional
 * arguments go to pos; "--" ends options.  Returns an exit code (usage
 * error already reported) or 0. */
int cli_args(const struct cli_command *cmd, int argc, char **argv,
	     const char *const *flags, int *flag_set,
	     char **pos, int max_pos, int *npos_r);
/* Folder by name into info_r; reports and returns CLI_EXIT_NOTFOUND or
 * another exit code on failure, 0 on success. */
int cli_folder_lookup(const struct cli_command *cmd, struct lmbox_store *store,
		      const char *name, struct lmbox_folder_info *info_r);
/* A UID argument (1-4294967295); usage error otherwise. */
int cli_parse_uid(const struct cli_command *cmd, const char *str, uint32_t *uid_r);

/* Strict unsigned decimal parse: 0 ok, -1 not a number or > max. */
int cli_parse_u64(const char *str, uint64_t max, uint64_t *value_r);

/* "12.3 MiB" into buf[32]. */
const char *cli_fmt_bytes(uint64_t bytes, char *buf);
/* "2026-11-23T11:49:17Z" (or "-" for 0) into buf[32]. */
const char *cli_fmt_time(int64_t t, char *buf);
/* Maildir-style letters "DFRST" of the set flags, "-" if none; buf[8]. */
const char *cli_fmt_flags(uint8_t flags, char *buf);
/* Seconds since an arbitrary fixed point, monotonic. */
double cli_now(void);

#endif
