/*
 * lmbox-cli-inspect.c: the read-only commands of the lmbox admin tool --
 * stat (store statistics and values), ls (folders, or one folder's
 * messages), cat (a body to stdout, checksum verified) and uidl (a message
 * by POP3 UIDL).  All open the store read-only and read no body but cat's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "lmbox-cli.h"

/* ------------------------------------------------------------- helpers */

/* Allocated bytes (what du counts) of one file, 0 if missing. */
static uint64_t file_alloc(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

static uint64_t dir_alloc(const char *path)
{
	char sub[4096];
	struct dirent *d;
	uint64_t total = 0;
	DIR *dir = opendir(path);

	if (dir == NULL)
		return 0;
	while ((d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name) < sizeof(sub))
			total += file_alloc(sub);
	}
	closedir(dir);
	return total;
}

/* ---------------------------------------------------------------- stat */

/* Values other parts of lmbox keep in the store (pop3/ module). */
static const char *const known_values[] = {
	"pop3.last_login",
	"pop3.login_count",
	"pop3.last_expire",
	NULL
};

/* Values named like times are shown as dates too. */
static int value_is_time(const char *name)
{
	return strstr(name, "last_") != NULL || strstr(name, "time") != NULL ||
		strstr(name, "date") != NULL;
}

static void print_value(struct lmbox_store *store, const char *name, int always)
{
	char tbuf[32];
	uint64_t v;

	if (lmbox_store_get_u64(store, name, &v) == 0) {
		if (value_is_time(name))
			printf("%-18s %" PRIu64 " (%s)\n", name, v,
			       cli_fmt_time((int64_t)v, tbuf));
		else
			printf("%-18s %" PRIu64 "\n", name, v);
	} else if (always) {
		printf("%-18s (unset)\n", name);
	}
}

/* Messages of all folders with a first POP3 retrieval time (recorded by the
   pop3_lmbox module), and the oldest such time.  Walks metadata only. */
static int count_pop3_retrieved(struct lmbox_store *store, uint64_t *count_r,
				int64_t *oldest_r)
{
	struct lmbox_folder_iter *fiter;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *miter;
	struct lmbox_msg_meta meta;
	int ret;

	*count_r = 0;
	*oldest_r = 0;
	if ((ret = lmbox_reader_begin(store, &reader)) < 0)
		return ret;
	if ((ret = lmbox_folder_iter_init(store, &fiter)) < 0) {
		lmbox_reader_end(&reader);
		return ret;
	}
	while ((ret = lmbox_folder_iter_next(fiter, &info)) > 0) {
		if ((ret = lmbox_msg_iter_init(reader, info.id, 1, &miter)) < 0)
			break;
		while ((ret = lmbox_msg_iter_next(miter, &meta)) > 0) {
			if (meta.pop3_first_retr == 0)
				continue;
			(*count_r)++;
			if (*oldest_r == 0 || meta.pop3_first_retr < *oldest_r)
				*oldest_r = meta.pop3_first_retr;
		}
		lmbox_msg_iter_deinit(&miter);
		if (ret < 0)
			break;
	}
	lmbox_folder_iter_deinit(&fiter);
	lmbox_reader_end(&reader);
	return ret;
}

static int cmd_stat(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store_stat st;
	struct lmbox_store *store;
	char path[4096], b1[32], b2[32], b3[32];
	const char *names[64];
	uint64_t mdb_alloc, disk, retrieved;
	int64_t oldest_retr;
	int i, ret, nnames = 0;
	char *dir = NULL;

	for (i = 1; i < argc; i++) {
		if (cli_opt_is(argv[i], "--value")) {
			if (i + 1 == argc)
				return cli_usage(cmd, "--value needs a NAME");
			if (nnames == 64)
				return cli_usage(cmd, "too many --value options");
			names[nnames++] = argv[++i];
		} else if (argv[i][0] == '-') {
			return cli_usage(cmd, "unknown option '%s'", argv[i]);
		} else if (dir != NULL) {
			return cli_usage(cmd, "unexpected argument '%s'", argv[i]);
		} else {
			dir = argv[i];
		}
	}
	if (dir == NULL)
		return cli_usage(cmd, "missing store directory");
	if ((ret = cli_store_open(cmd, dir, NULL, LMBOX_OPEN_RDONLY, &store)) != 0)
		return ret;
	ret = lmbox_store_stat(store, &st);
	if (ret < 0) {
		ret = cli_store_error(cmd, store, ret, "stat");
		lmbox_store_close(&store);
		return ret;
	}
	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	mdb_alloc = file_alloc(path);
	snprintf(path, sizeof(path), "%s/lmbox.mdb-lock", dir);
	disk = st.segment_alloc_bytes + mdb_alloc + file_alloc(path);
	snprintf(path, sizeof(path), "%s/tmp", dir);
	disk += dir_alloc(path);

	printf("%-18s %s\n", "store", lmbox_store_path(store));
	printf("%-18s %u\n", "format version", st.format_version);
	printf("%-18s %u\n", "folders", st.folder_count);
	printf("%-18s %" PRIu64 "\n", "messages", st.message_count);
	printf("%-18s %" PRIu64 " (%s)\n", "bytes raw", st.phys_bytes,
	       cli_fmt_bytes(st.phys_bytes, b1));
	printf("%-18s %" PRIu64 " (%s)\n", "bytes stored", st.stored_bytes,
	       cli_fmt_bytes(st.stored_bytes, b1));
	printf("%-18s %" PRIu64 " (%s; segments %s, metadata %s)\n", "bytes on disk",
	       disk, cli_fmt_bytes(disk, b1),
	       cli_fmt_bytes(st.segment_alloc_bytes, b2),
	       cli_fmt_bytes(mdb_alloc, b3));
	if (st.phys_bytes > 0)
		printf("%-18s %.3f (stored/raw)\n", "ratio",
		       (double)st.stored_bytes / (double)st.phys_bytes);
	else
		printf("%-18s -\n", "ratio");
	printf("%-18s %u (%" PRIu64 " bytes apparent)\n", "segments",
	       st.segment_count, st.segment_bytes);
	printf("%-18s %" PRIu64 " (%s)\n", "map size", st.map_size,
	       cli_fmt_bytes(st.map_size, b1));
	printf("%-18s %" PRIu64 " (%s)\n", "map used", st.map_used,
	       cli_fmt_bytes(st.map_used, b1));
	printf("%-18s %" PRIu64 "\n", "reclaim pending", st.reclaim_pending);
	printf("%-18s %" PRIu64 "\n", "pending expunges", st.pending_expunges);
	for (i = 0; known_values[i] != NULL; i++)
		print_value(store, known_values[i], 0);
	ret = count_pop3_retrieved(store, &retrieved, &oldest_retr);
	if (ret < 0) {
		ret = cli_store_error(cmd, store, ret, "counting retrieved messages");
		lmbox_store_close(&store);
		return ret;
	}
	if (retrieved > 0)
		printf("%-18s %" PRIu64 " (first RETR of the oldest: %s)\n",
		       "pop3 retrieved", retrieved, cli_fmt_time(oldest_retr, b1));
	for (i = 0; i < nnames; i++)
		print_value(store, names[i], 1);
	lmbox_store_close(&store);
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

const struct cli_command cli_cmd_stat = {
	"stat", "DIR [--value NAME]...",
	"store statistics: format, folders, messages, sizes, map, values",
	"Print the store's format version, folder and message counts, bytes raw\n"
	"(physical), stored (compressed, live messages; the blobs of pending\n"
	"expunges count until they are purged) and on disk (allocated blocks, as\n"
	"du counts them), the compression ratio, the segment count, the LMDB map\n"
	"size and use, the number of reclaim ranges pending, the number of\n"
	"expunges committed but not purged yet (pending expunges; the next write\n"
	"of any process purges them), and the store values that are set\n"
	"(pop3.last_login, ...).  --value NAME prints\n"
	"the named 64-bit store value too (\"(unset)\" if it is not set).\n"
	"Opens the store read-only.\n",
	cmd_stat
};

/* ------------------------------------------------------------------ ls */

static int ls_folders(const struct cli_command *cmd, struct lmbox_store *store)
{
	struct lmbox_folder_iter *iter;
	struct lmbox_folder_info info;
	int ret;

	ret = lmbox_folder_iter_init(store, &iter);
	if (ret < 0)
		return cli_store_error(cmd, store, ret, "listing folders");
	printf("%-30s %8s %14s %11s %10s\n",
	       "FOLDER", "COUNT", "VSIZE", "UIDVALIDITY", "NEXT_UID");
	while ((ret = lmbox_folder_iter_next(iter, &info)) > 0) {
		printf("%-30s %8u %14" PRIu64 " %11u %10u\n", info.name,
		       info.count, info.vsize_total, info.uidvalidity, info.next_uid);
	}
	lmbox_folder_iter_deinit(&iter);
	if (ret < 0)
		return cli_store_error(cmd, store, ret, "listing folders");
	return CLI_EXIT_OK;
}

static int ls_messages(const struct cli_command *cmd, struct lmbox_store *store,
		       const char *name)
{
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	char fbuf[8], rbuf[32], sbuf[32];
	const char *kw;
	int ret;

	if ((ret = cli_folder_lookup(cmd, store, name, &info)) != 0)
		return ret;
	if ((ret = lmbox_reader_begin(store, &reader)) < 0)
		return cli_store_error(cmd, store, ret, "reader");
	if ((ret = lmbox_msg_iter_init(reader, info.id, 1, &iter)) < 0) {
		lmbox_reader_end(&reader);
		return cli_store_error(cmd, store, ret, "listing messages");
	}
	printf("%10s %-24s %10s %10s %10s %-5s %-20s %-20s %s\n", "UID", "UIDL",
	       "VSIZE", "PSIZE", "STORED", "FLAGS", "RECEIVED", "SAVED", "KEYWORDS");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		printf("%10u %-24s %10" PRIu64 " %10" PRIu64 " %10" PRIu64
		       " %-5s %-20s %-20s", meta.uid, meta.uidl, meta.virt_size,
		       meta.phys_size, meta.stored_size,
		       cli_fmt_flags(meta.flags, fbuf),
		       cli_fmt_time(meta.received_date, rbuf),
		       cli_fmt_time(meta.save_date, sbuf));
		for (kw = lmbox_meta_next_keyword(&meta, NULL); kw != NULL;
		     kw = lmbox_meta_next_keyword(&meta, kw))
			printf(" %s", kw);
		putchar('\n');
	}
	lmbox_msg_iter_deinit(&iter);
	if (ret < 0)
		ret = cli_store_error(cmd, store, ret, "listing messages");
	lmbox_reader_end(&reader);
	return ret;
}

static int cmd_ls(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store *store;
	char *pos[2];
	int npos, ret;

	if ((ret = cli_args(cmd, argc, argv, NULL, NULL, pos, 2, &npos)) != 0)
		return ret;
	if (npos < 1)
		return cli_usage(cmd, "missing store directory");
	if ((ret = cli_store_open(cmd, pos[0], NULL, LMBOX_OPEN_RDONLY, &store)) != 0)
		return ret;
	ret = npos == 1 ? ls_folders(cmd, store) : ls_messages(cmd, store, pos[1]);
	lmbox_store_close(&store);
	if (fflush(stdout) != 0 && ret == 0)
		ret = CLI_EXIT_FAILED;
	return ret;
}

const struct cli_command cli_cmd_ls = {
	"ls", "DIR [FOLDER]",
	"list folders, or the messages of one folder",
	"Without FOLDER: one line per folder with its message count, sum of\n"
	"virtual (POP3) sizes, UIDVALIDITY and next UID.\n"
	"With FOLDER: one line per message in UID order: UID, UIDL, virtual size,\n"
	"physical size, stored (compressed) size, flags as Maildir letters\n"
	"(D draft, F flagged, R answered, S seen, T deleted), received and save\n"
	"dates (UTC), keywords.  Reads no message body.  Opens read-only.\n",
	cmd_ls
};

/* ------------------------------------------------------------ cat, uidl */

/* Metadata of folder/uid into meta_r; the reader stays open for the
 * pointers in it.  Returns an exit code. */
static int get_message(const struct cli_command *cmd, struct lmbox_store *store,
		       const char *folder, const char *uidl, uint32_t uid,
		       struct lmbox_reader **reader_r, struct lmbox_msg_meta *meta_r)
{
	struct lmbox_folder_info info;
	int ret;

	if ((ret = cli_folder_lookup(cmd, store, folder, &info)) != 0)
		return ret;
	if ((ret = lmbox_reader_begin(store, reader_r)) < 0)
		return cli_store_error(cmd, store, ret, "reader");
	if (uidl != NULL) {
		ret = lmbox_reader_uidl(*reader_r, info.id, uidl, &uid);
		if (ret == LMBOX_ERR_NOTFOUND) {
			cli_error(cmd, "no message with UIDL '%s' in %s", uidl, folder);
			lmbox_reader_end(reader_r);
			return CLI_EXIT_NOTFOUND;
		}
		if (ret < 0) {
			ret = cli_store_error(cmd, store, ret, "UIDL lookup");
			lmbox_reader_end(reader_r);
			return ret;
		}
	}
	ret = lmbox_reader_msg(*reader_r, info.id, uid, meta_r);
	if (ret == LMBOX_ERR_NOTFOUND) {
		cli_error(cmd, "no message UID %u in %s", uid, folder);
		lmbox_reader_end(reader_r);
		return CLI_EXIT_NOTFOUND;
	}
	if (ret < 0) {
		ret = cli_store_error(cmd, store, ret, "message lookup");
		lmbox_reader_end(reader_r);
		return ret;
	}
	return CLI_EXIT_OK;
}

static int cmd_cat(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store *store;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_body *body;
	unsigned char buf[65536];
	char *pos[3];
	uint32_t uid = 0;
	ssize_t n;
	int npos, ret;

	if ((ret = cli_args(cmd, argc, argv, NULL, NULL, pos, 3, &npos)) != 0)
		return ret;
	if (npos < 3)
		return cli_usage(cmd, "needs DIR FOLDER UID");
	if ((ret = cli_parse_uid(cmd, pos[2], &uid)) != 0)
		return ret;
	if ((ret = cli_store_open(cmd, pos[0], NULL, LMBOX_OPEN_RDONLY, &store)) != 0)
		return ret;
	ret = get_message(cmd, store, pos[1], NULL, uid, &reader, &meta);
	if (ret != 0) {
		lmbox_store_close(&store);
		return ret;
	}
	/* meta's pointers die with the reader; the body needs none of them
	 * but keep the reader until the body is open anyway. */
	n = lmbox_body_open(store, &meta, &body);
	lmbox_reader_end(&reader);
	if (n < 0) {
		ret = cli_store_error(cmd, store, (int)n, "opening body");
		lmbox_store_close(&store);
		return ret;
	}
	while ((n = lmbox_body_read(body, buf, sizeof(buf))) > 0) {
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
			cli_error(cmd, "writing to stdout: %s", strerror(errno));
			ret = CLI_EXIT_FAILED;
			break;
		}
	}
	if (n < 0) {
		/* Bytes already written are not the message: say so loudly. */
		ret = cli_store_error(cmd, store, (int)n, "reading body (output is not valid)");
	}
	lmbox_body_close(&body);
	lmbox_store_close(&store);
	if (fflush(stdout) != 0 && ret == 0) {
		cli_error(cmd, "writing to stdout: %s", strerror(errno));
		ret = CLI_EXIT_FAILED;
	}
	return ret;
}

static void print_meta(const char *folder, const struct lmbox_msg_meta *meta)
{
	char buf[32], hex[LMBOX_GUID_SIZE * 2 + 1];
	const char *kw;
	unsigned int i;

	for (i = 0; i < LMBOX_GUID_SIZE; i++)
		snprintf(hex + i * 2, 3, "%02x", meta->guid[i]);
	printf("%-15s %s\n", "folder", folder);
	printf("%-15s %u\n", "uid", meta->uid);
	printf("%-15s %s\n", "uidl", meta->uidl);
	printf("%-15s %s\n", "guid", hex);
	printf("%-15s %u\n", "pop3_order", meta->pop3_order);
	printf("%-15s %s\n", "flags", cli_fmt_flags(meta->flags, buf));
	printf("%-15s", "keywords");
	kw = lmbox_meta_next_keyword(meta, NULL);
	if (kw == NULL)
		printf(" -");
	for (; kw != NULL; kw = lmbox_meta_next_keyword(meta, kw))
		printf(" %s", kw);
	putchar('\n');
	printf("%-15s %s\n", "received", cli_fmt_time(meta->received_date, buf));
	printf("%-15s %s\n", "saved", cli_fmt_time(meta->save_date, buf));
	printf("%-15s %s\n", "pop3_first_retr", cli_fmt_time(meta->pop3_first_retr, buf));
	printf("%-15s %" PRIu64 "\n", "vsize", meta->virt_size);
	printf("%-15s %" PRIu64 "\n", "psize", meta->phys_size);
	printf("%-15s %" PRIu64 "\n", "stored", meta->stored_size);
	printf("%-15s %s\n", "codec", meta->codec == LMBOX_CODEC_RAW ? "raw" :
	       meta->codec == LMBOX_CODEC_DEFLATE ? "deflate" :
	       meta->codec == LMBOX_CODEC_DEFLATE_DICT1 ? "deflate+dict1" :
	       meta->codec == LMBOX_CODEC_DEFLATE_B64 ? "deflate+dict1+base64" :
	       meta->codec == LMBOX_CODEC_DEFLATE_B64_SDICT ? "deflate+storedict+base64" : "unknown");
	printf("%-15s %08x\n", "checksum", meta->checksum);
	printf("%-15s %u\n", "segment", meta->seg_id);
	printf("%-15s %" PRIu64 "\n", "offset", meta->seg_offset);
}

static int cmd_uidl(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store *store;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	char *pos[3];
	int npos, ret;

	if ((ret = cli_args(cmd, argc, argv, NULL, NULL, pos, 3, &npos)) != 0)
		return ret;
	if (npos < 3)
		return cli_usage(cmd, "needs DIR FOLDER UIDL");
	if (*pos[2] == '\0' || strlen(pos[2]) > LMBOX_MAX_UIDL_LEN)
		return cli_usage(cmd, "UIDL must be 1-%d characters", LMBOX_MAX_UIDL_LEN);
	if ((ret = cli_store_open(cmd, pos[0], NULL, LMBOX_OPEN_RDONLY, &store)) != 0)
		return ret;
	ret = get_message(cmd, store, pos[1], pos[2], 0, &reader, &meta);
	if (ret == 0) {
		print_meta(pos[1], &meta);
		lmbox_reader_end(&reader);
	}
	lmbox_store_close(&store);
	if (fflush(stdout) != 0 && ret == 0)
		ret = CLI_EXIT_FAILED;
	return ret;
}

const struct cli_command cli_cmd_cat = {
	"cat", "DIR FOLDER UID",
	"write a message body to stdout",
	"Write the physical bytes of message UID of FOLDER to stdout.  The body\n"
	"is checked against its checksum when its end is reached: on a mismatch\n"
	"the bytes already written are not the message, an error is printed and\n"
	"the exit status is 1.\n",
	cmd_cat
};

const struct cli_command cli_cmd_uidl = {
	"uidl", "DIR FOLDER UIDL",
	"look up a message by POP3 UIDL and print its metadata",
	"Find the message of FOLDER whose UIDL is UIDL (the lowest UID if copies\n"
	"share it) and print its metadata, one \"name value\" line each: UID,\n"
	"GUID, flags, keywords, dates, sizes, codec, checksum, segment, offset.\n",
	cmd_uidl
};
