/*
 * lmbox-cli-check.c: the maintenance commands of the lmbox admin tool --
 * check [--bodies] [--repair] (lmbox_check(), exit 1 if problems are found
 * or left after a repair; --repair moves malformed message records to
 * DIR/lost+found) and compact (lmbox_compact()).
 */
#include <inttypes.h>
#include <stdio.h>

#include "lmbox-cli.h"

/* ------------------------------------------------------- check, compact */

static void check_report(void *context, const char *line)
{
	unsigned int *lines = context;

	(*lines)++;
	printf("%s\n", line);
}

static void check_quiet(void *context, const char *line)
{
	(void)context;
	(void)line;
}

static int cmd_check(const struct cli_command *cmd, int argc, char **argv)
{
	static const char *const flags[] = { "--bodies", "--repair", NULL };
	int flag_set[2] = { 0, 0 };
	struct lmbox_store *store;
	unsigned int check_flags = 0, lines = 0;
	char *pos[1];
	int npos, ret, found, left;

	ret = cli_args(cmd, argc, argv, flags, flag_set, pos, 1, &npos);
	if (ret != 0)
		return ret;
	if (npos < 1)
		return cli_usage(cmd, "missing store directory");
	if (flag_set[0])
		check_flags |= LMBOX_CHECK_BODIES;
	ret = cli_store_open(cmd, pos[0], NULL,
			     flag_set[1] ? 0 : LMBOX_OPEN_RDONLY, &store);
	if (ret != 0)
		return ret;
	found = lmbox_check(store, check_flags | (flag_set[1] ? LMBOX_CHECK_REPAIR : 0),
			    check_report, &lines);
	if (found < 0) {
		ret = cli_store_error(cmd, store, found, "check");
		lmbox_store_close(&store);
		return ret;
	}
	if (!flag_set[1]) {
		printf("%d problem%s found\n", found, found == 1 ? "" : "s");
		ret = found == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
	} else if (found == 0) {
		printf("0 problems found\n");
		ret = CLI_EXIT_OK;
	} else {
		/* Say what the repair left behind by checking again. */
		left = lmbox_check(store, check_flags, check_quiet, NULL);
		if (left < 0) {
			ret = cli_store_error(cmd, store, left, "check after repair");
		} else {
			printf("%d problem%s found, %d left after repair\n",
			       found, found == 1 ? "" : "s", left);
			ret = left == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
		}
	}
	lmbox_store_close(&store);
	if (fflush(stdout) != 0 && ret == 0)
		ret = CLI_EXIT_FAILED;
	return ret;
}

static int cmd_compact(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store_stat before, after;
	struct lmbox_store *store;
	uint64_t freed = 0;
	char *pos[1], b1[32], b2[32], b3[32];
	int npos, ret;

	if ((ret = cli_args(cmd, argc, argv, NULL, NULL, pos, 1, &npos)) != 0)
		return ret;
	if (npos < 1)
		return cli_usage(cmd, "missing store directory");
	if ((ret = cli_store_open(cmd, pos[0], NULL, 0, &store)) != 0)
		return ret;
	if ((ret = lmbox_store_stat(store, &before)) < 0 ||
	    (ret = lmbox_compact(store, &freed)) < 0 ||
	    (ret = lmbox_store_stat(store, &after)) < 0) {
		ret = cli_store_error(cmd, store, ret, "compact");
		lmbox_store_close(&store);
		return ret;
	}
	printf("freed %" PRIu64 " bytes (%s); segments allocated %s -> %s\n",
	       freed, cli_fmt_bytes(freed, b1),
	       cli_fmt_bytes(before.segment_alloc_bytes, b2),
	       cli_fmt_bytes(after.segment_alloc_bytes, b3));
	lmbox_store_close(&store);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

const struct cli_command cli_cmd_check = {
	"check", "DIR [--bodies] [--repair]",
	"check the store's consistency",
	"Check the metadata (counters, UIDL index, segment ranges, reclaim list)\n"
	"and print one line per problem found, then a summary line.\n"
	"  --bodies  also read every body and verify its checksum (slow)\n"
	"  --repair  fix what can be fixed without losing mail (counters, UIDL\n"
	"            index, reclaim list), then check again.  A message record\n"
	"            that does not decode is saved with its body to\n"
	"            DIR/lost+found/msg-F-U-T.{rec,eml}, then deleted.  Files in\n"
	"            DIR/dict/ that no dictionary record names (a training killed\n"
	"            midway) are \"warning:\" lines, not problems; --repair\n"
	"            removes those more than 10 minutes old\n"
	"Exit 0 if no problem was found (with --repair: none is left), 1 if any.\n",
	cmd_check
};

const struct cli_command cli_cmd_compact = {
	"compact", "DIR",
	"rewrite sparse segments to return partial blocks",
	"Deleted mail's space comes back by itself (hole punching); compact moves\n"
	"the live bodies out of sparse segments so the partial blocks around\n"
	"them are returned too.  Safe while the store is in use.\n",
	cmd_compact
};
