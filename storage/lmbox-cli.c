/*
 * lmbox-cli.c: the `lmbox` admin tool -- command dispatch, help, and the
 * shared helpers of lmbox-cli.h.  The commands live by role in
 * lmbox-cli-inspect.c (stat, ls, cat, uidl), lmbox-cli-check.c (check,
 * compact), lmbox-cli-import.c (import-maildir) and lmbox-cli-bench.c
 * (bench).  Needs no Dovecot.
 *
 * Diagnostics: one line per problem on stderr, prefixed "lmbox CMD: ";
 * the exit code says what kind of failure it was (enum lmbox_cli_exit).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmbox-cli.h"

/* ------------------------------------------------------------- helpers */

static const char *cli_cmd_name(const struct cli_command *cmd)
{
	return cmd == NULL ? "" : cmd->name;
}

int cli_usage(const struct cli_command *cmd, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "lmbox%s%s: ", cmd == NULL ? "" : " ", cli_cmd_name(cmd));
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, " (see lmbox%s%s --help)\n",
		cmd == NULL ? "" : " ", cli_cmd_name(cmd));
	return CLI_EXIT_USAGE;
}

void cli_error(const struct cli_command *cmd, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "lmbox%s%s: ", cmd == NULL ? "" : " ", cli_cmd_name(cmd));
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
}

int cli_exit_for(int err)
{
	if (err == LMBOX_ERR_NOTFOUND)
		return CLI_EXIT_NOTFOUND;
	return err < 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int cli_store_error(const struct cli_command *cmd, struct lmbox_store *store,
		    int err, const char *what)
{
	const char *msg = store == NULL ? NULL : lmbox_store_errmsg(store);

	if (msg == NULL || *msg == '\0')
		msg = lmbox_strerror(err);
	cli_error(cmd, "%s: %s", what, msg);
	return cli_exit_for(err);
}

int cli_store_open(const struct cli_command *cmd, const char *dir,
		   const struct lmbox_store_opts *opts, unsigned int flags,
		   struct lmbox_store **store_r)
{
	struct lmbox_store_opts o;
	const char *errmsg = NULL;
	int ret;

	if (opts != NULL)
		o = *opts;
	else
		lmbox_store_opts_init(&o);
	o.flags |= flags;
	ret = lmbox_store_open(dir, &o, store_r, &errmsg);
	if (ret < 0) {
		cli_error(cmd, "cannot open store %s: %s", dir,
			  errmsg != NULL && *errmsg != '\0' ? errmsg :
			  lmbox_strerror(ret));
		*store_r = NULL;
		return CLI_EXIT_OPEN;
	}
	return CLI_EXIT_OK;
}

int cli_parse_u64(const char *str, uint64_t max, uint64_t *value_r)
{
	unsigned long long v;
	char *end;

	if (str == NULL || *str < '0' || *str > '9')
		return -1;
	errno = 0;
	v = strtoull(str, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*value_r = v;
	return 0;
}

const char *cli_fmt_bytes(uint64_t bytes, char *buf)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned int i = 0;

	while (v >= 1024.0 && i < 4) {
		v /= 1024.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, 32, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, 32, "%.1f %s", v, units[i]);
	return buf;
}

const char *cli_fmt_time(int64_t t, char *buf)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, t == 0 ? "-" : "%" PRId64, t);
	return buf;
}

const char *cli_fmt_flags(uint8_t flags, char *buf)
{
	char *p = buf;

	/* Maildir's letters in Maildir's (ASCII) order. */
	if ((flags & LMBOX_FLAG_DRAFT) != 0) *p++ = 'D';
	if ((flags & LMBOX_FLAG_FLAGGED) != 0) *p++ = 'F';
	if ((flags & LMBOX_FLAG_ANSWERED) != 0) *p++ = 'R';
	if ((flags & LMBOX_FLAG_SEEN) != 0) *p++ = 'S';
	if ((flags & LMBOX_FLAG_DELETED) != 0) *p++ = 'T';
	if (p == buf)
		*p++ = '-';
	*p = '\0';
	return buf;
}

double cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cli_opt_is(const char *arg, const char *name)
{
	return strcmp(arg, name) == 0;
}

int cli_args(const struct cli_command *cmd, int argc, char **argv,
			      const char *const *flags, int *flag_set,
			      char **pos, int max_pos, int *npos_r)
{
	int i, j, npos = 0, only_pos = 0;

	for (i = 1; i < argc; i++) {
		if (!only_pos && cli_opt_is(argv[i], "--")) {
			only_pos = 1;
			continue;
		}
		if (!only_pos && argv[i][0] == '-' && argv[i][1] != '\0') {
			for (j = 0; flags != NULL && flags[j] != NULL; j++) {
				if (cli_opt_is(argv[i], flags[j]))
					break;
			}
			if (flags == NULL || flags[j] == NULL)
				return cli_usage(cmd, "unknown option '%s'", argv[i]);
			flag_set[j] = 1;
			continue;
		}
		if (npos == max_pos)
			return cli_usage(cmd, "unexpected argument '%s'", argv[i]);
		pos[npos++] = argv[i];
	}
	*npos_r = npos;
	return CLI_EXIT_OK;
}

int cli_folder_lookup(const struct cli_command *cmd, struct lmbox_store *store,
		       const char *name, struct lmbox_folder_info *info_r)
{
	int ret = lmbox_folder_lookup(store, name, info_r);

	if (ret == LMBOX_ERR_NOTFOUND) {
		cli_error(cmd, "no folder '%s'", name);
		return CLI_EXIT_NOTFOUND;
	}
	if (ret < 0)
		return cli_store_error(cmd, store, ret, "folder lookup");
	return CLI_EXIT_OK;
}

int cli_parse_uid(const struct cli_command *cmd, const char *str, uint32_t *uid_r)
{
	uint64_t v;

	if (cli_parse_u64(str, UINT32_MAX, &v) < 0 || v == 0)
		return cli_usage(cmd, "UID must be a number 1-4294967295: '%s'", str);
	*uid_r = (uint32_t)v;
	return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- main */







static const struct cli_command *const commands[] = {
	&cli_cmd_stat, &cli_cmd_ls, &cli_cmd_cat, &cli_cmd_uidl,
	&cli_cmd_check, &cli_cmd_compact, &cli_cmd_import_maildir,
	&cli_cmd_bench, NULL
};

static void print_cmd_help(const struct cli_command *cmd)
{
	printf("Usage: lmbox %s %s\n%s\n\n%s\n" CLI_EXIT_HELP, cmd->name,
	       cmd->synopsis, cmd->summary, cmd->help);
}

static void print_main_help(void)
{
	unsigned int i;

	printf("Usage: lmbox COMMAND [ARGS]   (lmbox COMMAND --help for details)\n"
	       "Admin tool for lmbox mail stores (DIR is a store directory, e.g.\n"
	       "~user/lmbox).  Needs no Dovecot.\n\nCommands:\n");
	for (i = 0; commands[i] != NULL; i++)
		printf("  %-15s %s\n", commands[i]->name, commands[i]->summary);
	printf("\nExit status:\n"
	       "  0  ok (check: no problem found)\n"
	       "  1  problem found, or the operation failed (I/O, corrupt data,\n"
	       "     checksum mismatch)\n"
	       "  2  usage error\n"
	       "  3  the store cannot be opened (missing, newer format, permission,\n"
	       "     busy)\n"
	       "  4  folder, message or UIDL not found\n");
}

int main(int argc, char **argv)
{
	const struct cli_command *cmd = NULL;
	unsigned int i;
	int j;

	if (argc < 2)
		return cli_usage(NULL, "missing command");
	if (cli_opt_is(argv[1], "--help") || cli_opt_is(argv[1], "-h") ||
	    cli_opt_is(argv[1], "help")) {
		if (argc > 2) {
			for (i = 0; commands[i] != NULL; i++) {
				if (cli_opt_is(argv[2], commands[i]->name)) {
					print_cmd_help(commands[i]);
					return CLI_EXIT_OK;
				}
			}
			return cli_usage(NULL, "unknown command '%s'", argv[2]);
		}
		print_main_help();
		return CLI_EXIT_OK;
	}
	if (cli_opt_is(argv[1], "--version")) {
		printf("lmbox (store format %d)\n", LMBOX_FORMAT_VERSION);
		return CLI_EXIT_OK;
	}
	for (i = 0; commands[i] != NULL; i++) {
		if (cli_opt_is(argv[1], commands[i]->name)) {
			cmd = commands[i];
			break;
		}
	}
	if (cmd == NULL)
		return cli_usage(NULL, "unknown command '%s'", argv[1]);
	for (j = 2; j < argc; j++) {
		if (cli_opt_is(argv[j], "--"))
			break;
		if (cli_opt_is(argv[j], "--help") || cli_opt_is(argv[j], "-h")) {
			print_cmd_help(cmd);
			return CLI_EXIT_OK;
		}
	}
	return cmd->run(cmd, argc - 1, argv + 1);
}
