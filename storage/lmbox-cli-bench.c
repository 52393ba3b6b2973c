/*
 * lmbox-cli-bench.c: `lmbox bench` -- storage micro-benchmark of liblmbox
 * alone (no Dovecot) on a generated, deterministic corpus of realistic
 * mail: text/plain messages of a few KB, some with an HTML alternative or
 * a base64 attachment.  Measures append, metadata scan, UIDL lookup, body
 * read, the deletion of 10k messages in one commit, and the compression
 * ratio on the corpus and on plain text mail.  The store is created in a
 * fresh directory and removed afterwards.
 */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "lmbox-cli.h"

#define BENCH_DEFAULT_N 10000
#define BENCH_DELETE_N 10000
#define BENCH_PLAIN_N 2000
#define BENCH_SCAN_RUNS 5

struct bench_rng {
	uint64_t s;
};

/* splitmix64: cheap, good enough, and the same on every machine. */
static uint64_t rng_next(struct bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned int rng_below(struct bench_rng *r, unsigned int n)
{
	return (unsigned int)(rng_next(r) % n);
}

struct buf {
	char *data;
	size_t len, cap;
};

static void buf_grow(struct buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	while (b->len + more > b->cap)
		b->cap = b->cap == 0 ? 16384 : b->cap * 2;
	if ((b->data = realloc(b->data, b->cap)) == NULL) {
		fprintf(stderr, "lmbox bench: out of memory\n");
		exit(CLI_EXIT_FAILED);
	}
}

static void buf_add(struct buf *b, const char *s, size_t len)
{
	buf_grow(b, len);
	memcpy(b->data + b->len, s, len);
	b->len += len;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list args;
	int n;

	buf_grow(b, 512);
	va_start(args, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, args);
	va_end(args);
	if (n > 0 && (size_t)n < b->cap - b->len)
		b->len += (size_t)n;
}

static const char *const words[] = {
	"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as",
	"was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his",
	"from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
	"their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
	"more", "when", "will", "would", "who", "so", "no", "meeting", "report",
	"please", "attached", "thanks", "regards", "project", "invoice", "order",
	"delivery", "schedule", "tomorrow", "customer", "server", "update",
	"question", "review", "budget", "contract", "version", "problem",
	"solution", "available", "Monday", "Friday", "office", "team", "issue",
	"document", "information", "account", "payment", "password", "support",
	"request", "confirm", "change", "status", "release", "quarter", "numbers",
	"draft", "comments", "deadline", "price", "offer", "shipping", "address",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static void add_text(struct buf *b, struct bench_rng *r, size_t bytes)
{
	size_t start = b->len, col = 0;
	const char *w;
	size_t wl;

	while (b->len - start < bytes) {
		w = words[rng_below(r, N_WORDS)];
		wl = strlen(w);
		if (col + wl + 1 > 72) {
			buf_add(b, "\n", 1);
			col = 0;
			if (rng_below(r, 8) == 0)
				buf_add(b, "\n", 1);
		} else if (col > 0) {
			buf_add(b, " ", 1);
			col++;
		}
		buf_add(b, w, wl);
		col += wl;
	}
	buf_add(b, "\n", 1);
}

static void add_base64(struct buf *b, struct bench_rng *r, size_t raw_bytes)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, col = 0;
	uint64_t v = 0;

	/* 4 characters per 3 random bytes, 76 per line. */
	for (i = 0; i < raw_bytes / 3 * 4; i++) {
		if (i % 10 == 0)
			v = rng_next(r);
		buf_grow(b, 2);
		b->data[b->len++] = b64[v & 63];
		v >>= 6;
		if (++col == 76) {
			b->data[b->len++] = '\n';
			col = 0;
		}
	}
	buf_add(b, "\n", 1);
}

/* Message i of the corpus; plain: text/plain only. */
static void gen_message(struct buf *b, uint64_t i, int plain)
{
	struct bench_rng r = { i * 0x2545f4914f6cdd1dULL + (plain ? 7 : 1) };
	unsigned int kind = plain ? 0 : rng_below(&r, 10);
	size_t text = 300 + rng_below(&r, 2500);
	int64_t date = 1700000000 + (int64_t)i * 97;
	unsigned int u[8], k;
	uint64_t id, mid;
	char dbuf[64];
	struct tm tm;
	time_t tt;

	if (rng_below(&r, 6) == 0)
		text += rng_below(&r, 12000);
	/* Draw in a fixed order: argument evaluation order is unspecified. */
	for (k = 0; k < 8; k++)
		u[k] = rng_below(&r, 500);
	id = rng_next(&r) & 0xffffffffULL;
	mid = rng_next(&r);
	tt = (time_t)date;
	gmtime_r(&tt, &tm);
	strftime(dbuf, sizeof(dbuf), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	b->len = 0;
	buf_printf(b, "Return-Path: <user%u@example.org>\n"
		   "Received: from mx%u.example.org (mx%u.example.org [192.0.2.%u])\n"
		   "\tby mail.example.com (Postfix) with ESMTPS id %08" PRIX64 "\n"
		   "\tfor <rcpt@example.com>; %s\n"
		   "Received: from localhost by mx%u.example.org; %s\n",
		   u[0], u[1] % 9, u[1] % 9, u[2] % 250, id, dbuf, u[3] % 9, dbuf);
	buf_printf(b, "From: User %u <user%u@example.org>\nTo: rcpt@example.com\n"
		   "Subject: %s %s %s %" PRIu64 "\nDate: %s\n"
		   "Message-ID: <%016" PRIx64 ".%" PRIu64 "@example.org>\n"
		   "MIME-Version: 1.0\n",
		   u[4], u[4], words[u[5] % N_WORDS], words[u[6] % N_WORDS],
		   words[u[7] % N_WORDS], i, dbuf, mid, i);
	if (kind < 7) {
		buf_printf(b, "Content-Type: text/plain; charset=utf-8\n\n");
		add_text(b, &r, text);
	} else if (kind < 9) {
		buf_printf(b, "Content-Type: multipart/alternative; boundary=\"b%" PRIu64 "\"\n\n"
			   "--b%" PRIu64 "\nContent-Type: text/plain; charset=utf-8\n\n", i, i);
		add_text(b, &r, text);
		buf_printf(b, "--b%" PRIu64 "\nContent-Type: text/html; charset=utf-8\n\n"
			   "<html><body><p>\n", i);
		add_text(b, &r, text + text / 4);
		buf_printf(b, "</p></body></html>\n--b%" PRIu64 "--\n", i);
	} else {
		buf_printf(b, "Content-Type: multipart/mixed; boundary=\"b%" PRIu64 "\"\n\n"
			   "--b%" PRIu64 "\nContent-Type: text/plain; charset=utf-8\n\n", i, i);
		add_text(b, &r, text);
		buf_printf(b, "--b%" PRIu64 "\nContent-Type: application/pdf; name=\"f.pdf\"\n"
			   "Content-Transfer-Encoding: base64\n\n", i);
		add_base64(b, &r, 2000 + rng_below(&r, 40000));
		buf_printf(b, "--b%" PRIu64 "--\n", i);
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct bench_ctx {
	const struct cli_command *cmd;
	struct lmbox_store *store;
	uint64_t n, batch;
	struct buf msg;
};

/* Append n messages (plain or mixed corpus) to folder; uids_r[i] gets the
 * UID of message i.  Returns raw bytes or -1. */
static int64_t bench_append(struct bench_ctx *ctx, uint32_t folder, uint64_t n,
			    int plain, uint32_t *uids_r)
{
	struct lmbox_commit_result res;
	struct lmbox_append_opts opts;
	struct lmbox_append *append;
	struct lmbox_txn *txn = NULL;
	uint64_t i, first = 0, j;
	int64_t bytes = 0;
	char uidl[32];
	int ret;

	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	for (i = 0; i < n; i++) {
		if (txn == NULL) {
			if ((ret = lmbox_txn_begin(ctx->store, &txn)) < 0)
				goto fail;
			first = i;
		}
		gen_message(&ctx->msg, i, plain);
		snprintf(uidl, sizeof(uidl), "%c%08" PRIx64, plain ? 'p' : 'm', i);
		opts.received_date = 1700000000 + (int64_t)i * 97;
		if ((ret = lmbox_append_begin(txn, folder, &opts, &append)) < 0)
			goto fail;
		if ((ret = lmbox_append_write(append, ctx->msg.data, ctx->msg.len)) < 0) {
			lmbox_append_abort(&append);
			goto fail;
		}
		if ((ret = lmbox_append_finish(&append)) < 0)
			goto fail;
		bytes += (int64_t)ctx->msg.len;
		if (i + 1 - first >= ctx->batch || i + 1 == n) {
			if ((ret = lmbox_txn_commit(&txn, &res)) < 0)
				goto fail;
			for (j = 0; j < res.uid_count && first + j < n; j++)
				uids_r[first + j] = res.uids[j];
			lmbox_commit_result_free(&res);
		}
	}
	return bytes;
fail:
	lmbox_txn_abort(&txn);
	cli_store_error(ctx->cmd, ctx->store, ret, "append");
	return -1;
}

static int bench_run(struct bench_ctx *ctx, int level, const char *fsync_name)
{
	const struct cli_command *cmd = ctx->cmd;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	struct lmbox_commit_result res;
	struct lmbox_txn *txn;
	struct lmbox_body *body;
	struct bench_rng r = { 42 };
	uint32_t folder, plain_folder, *uids, uid, *plain_uids;
	uint64_t i, n = ctx->n, scanned, vsum, stored, raw, body_bytes, ndel;
	uint64_t plain_n = n < BENCH_PLAIN_N ? n : BENCH_PLAIN_N;
	double t0, t, scans[BENCH_SCAN_RUNS];
	char uidl[32], b1[32];
	unsigned char rbuf[65536];
	int64_t bytes;
	ssize_t rd;
	int ret, k;

	uids = calloc(n, sizeof(*uids));
	plain_uids = calloc(plain_n, sizeof(*plain_uids));
	if (uids == NULL || plain_uids == NULL) {
		cli_error(cmd, "out of memory");
		return CLI_EXIT_FAILED;
	}
	if ((ret = lmbox_folder_create(ctx->store, "INBOX", 0, NULL, &folder)) < 0 ||
	    (ret = lmbox_folder_create(ctx->store, "Plain", 0, NULL, &plain_folder)) < 0) {
		ret = cli_store_error(cmd, ctx->store, ret, "folder create");
		goto out;
	}

	t0 = cli_now();
	if ((bytes = bench_append(ctx, folder, n, 0, uids)) < 0) {
		ret = CLI_EXIT_FAILED;
		goto out;
	}
	t = cli_now() - t0;
	printf("corpus            %" PRIu64 " messages, %s raw (avg %" PRIu64 " bytes), "
	       "level %d, fsync %s, %" PRIu64 " per commit\n", n,
	       cli_fmt_bytes((uint64_t)bytes, b1), (uint64_t)bytes / n, level,
	       fsync_name, ctx->batch);
	printf("append            %.0f msgs/s, %.1f MB/s (%.2f s)\n",
	       (double)n / t, (double)bytes / t / 1e6, t);

	/* Metadata scan: what a POP3 login's walk costs. */
	for (k = 0; k < BENCH_SCAN_RUNS; k++) {
		t0 = cli_now();
		scanned = vsum = 0;
		if ((ret = lmbox_reader_begin(ctx->store, &reader)) < 0)
			goto store_fail;
		if ((ret = lmbox_msg_iter_init(reader, folder, 1, &iter)) < 0) {
			lmbox_reader_end(&reader);
			goto store_fail;
		}
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			scanned++;
			vsum += meta.virt_size;
		}
		lmbox_msg_iter_deinit(&iter);
		lmbox_reader_end(&reader);
		if (ret < 0)
			goto store_fail;
		scans[k] = (cli_now() - t0) * 1000.0;
	}
	qsort(scans, BENCH_SCAN_RUNS, sizeof(double), cmp_double);
	printf("metadata scan     %.2f ms for %" PRIu64 " messages (median of %d; "
	       "vsize sum %" PRIu64 ")\n", scans[BENCH_SCAN_RUNS / 2], scanned,
	       BENCH_SCAN_RUNS, vsum);

	/* UIDL -> message, random order. */
	t0 = cli_now();
	if ((ret = lmbox_reader_begin(ctx->store, &reader)) < 0)
		goto store_fail;
	for (i = 0; i < n; i++) {
		uint64_t m = rng_next(&r) % n;

		snprintf(uidl, sizeof(uidl), "m%08" PRIx64, m);
		if ((ret = lmbox_reader_uidl(reader, folder, uidl, &uid)) < 0 ||
		    (ret = lmbox_reader_msg(reader, folder, uid, &meta)) < 0) {
			lmbox_reader_end(&reader);
			goto store_fail;
		}
		if (uid != uids[m]) {
			lmbox_reader_end(&reader);
			cli_error(cmd, "UIDL %s gave UID %u, expected %u", uidl, uid, uids[m]);
			ret = CLI_EXIT_FAILED;
			goto out;
		}
	}
	lmbox_reader_end(&reader);
	t = cli_now() - t0;
	printf("uidl lookup       %.0f lookups/s (%" PRIu64 " UIDL->UID->metadata, %.1f ms)\n",
	       (double)n / t, n, t * 1000.0);

	/* Every body, decompressed and checksummed. */
	t0 = cli_now();
	body_bytes = stored = raw = 0;
	if ((ret = lmbox_reader_begin(ctx->store, &reader)) < 0)
		goto store_fail;
	if ((ret = lmbox_msg_iter_init(reader, folder, 1, &iter)) < 0) {
		lmbox_reader_end(&reader);
		goto store_fail;
	}
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		stored += meta.stored_size;
		raw += meta.phys_size;
		if ((ret = lmbox_body_open(ctx->store, &meta, &body)) < 0)
			break;
		while ((rd = lmbox_body_read(body, rbuf, sizeof(rbuf))) > 0)
			body_bytes += (uint64_t)rd;
		lmbox_body_close(&body);
		if (rd < 0) {
			ret = (int)rd;
			break;
		}
	}
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	if (ret < 0)
		goto store_fail;
	t = cli_now() - t0;
	printf("body read         %.1f MB/s decompressed (%s in %.2f s)\n",
	       (double)body_bytes / t / 1e6, cli_fmt_bytes(body_bytes, b1), t);
	printf("ratio corpus      %.3f (stored/raw)\n",
	       raw > 0 ? (double)stored / (double)raw : 0.0);

	/* Plain text mail alone. */
	if (bench_append(ctx, plain_folder, plain_n, 1, plain_uids) < 0) {
		ret = CLI_EXIT_FAILED;
		goto out;
	}
	stored = raw = 0;
	if ((ret = lmbox_reader_begin(ctx->store, &reader)) < 0)
		goto store_fail;
	if ((ret = lmbox_msg_iter_init(reader, plain_folder, 1, &iter)) < 0) {
		lmbox_reader_end(&reader);
		goto store_fail;
	}
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		stored += meta.stored_size;
		raw += meta.phys_size;
	}
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	if (ret < 0)
		goto store_fail;
	printf("ratio plain text  %.3f (stored/raw, %" PRIu64 " messages)\n",
	       raw > 0 ? (double)stored / (double)raw : 0.0, plain_n);

	/* A POP3 QUIT deleting 10k messages: one commit. */
	ndel = n < BENCH_DELETE_N ? n : BENCH_DELETE_N;
	t0 = cli_now();
	if ((ret = lmbox_txn_begin(ctx->store, &txn)) < 0)
		goto store_fail;
	for (i = 0; i < ndel; i++) {
		if ((ret = lmbox_txn_expunge(txn, folder, uids[i])) < 0) {
			lmbox_txn_abort(&txn);
			goto store_fail;
		}
	}
	if ((ret = lmbox_txn_commit(&txn, &res)) < 0)
		goto store_fail;
	t = cli_now() - t0;
	printf("delete            %.1f ms for %u messages in one commit\n",
	       t * 1000.0, res.expunged);
	lmbox_commit_result_free(&res);
	if ((ret = lmbox_folder_lookup(ctx->store, "INBOX", &info)) < 0)
		goto store_fail;
	if (info.count != n - ndel) {
		cli_error(cmd, "INBOX has %u messages after the delete, expected %" PRIu64,
			  info.count, n - ndel);
		ret = CLI_EXIT_FAILED;
		goto out;
	}
	ret = CLI_EXIT_OK;
	goto out;
store_fail:
	ret = cli_store_error(cmd, ctx->store, ret, "bench");
out:
	free(uids);
	free(plain_uids);
	return ret;
}

static int cmd_bench(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store_opts opts;
	struct bench_ctx ctx;
	const char *parent = NULL, *fsync_name = "never";
	char path[4096];
	uint64_t level = 6, v;
	int j, ret, keep = 0;

	memset(&ctx, 0, sizeof(ctx));
	ctx.cmd = cmd;
	ctx.n = BENCH_DEFAULT_N;
	ctx.batch = 1;
	lmbox_store_opts_init(&opts);
	opts.fsync = LMBOX_FSYNC_NEVER;
	for (j = 1; j < argc; j++) {
		const char *val = j + 1 < argc ? argv[j + 1] : NULL;

		if (strcmp(argv[j], "--n") == 0) {
			if (cli_parse_u64(val, 100000000, &ctx.n) < 0 || ctx.n == 0)
				return cli_usage(cmd, "--n needs a number 1-100000000");
		} else if (strcmp(argv[j], "--dir") == 0) {
			if (val == NULL)
				return cli_usage(cmd, "--dir needs a directory");
			parent = val;
		} else if (strcmp(argv[j], "--level") == 0) {
			if (cli_parse_u64(val, 9, &level) < 0)
				return cli_usage(cmd, "--level needs 0-9");
		} else if (strcmp(argv[j], "--batch") == 0) {
			if (cli_parse_u64(val, 1000000, &v) < 0 || v == 0)
				return cli_usage(cmd, "--batch needs a number 1-1000000");
			ctx.batch = v;
		} else if (strcmp(argv[j], "--fsync") == 0) {
			if (val != NULL && strcmp(val, "always") == 0)
				opts.fsync = LMBOX_FSYNC_ALWAYS;
			else if (val != NULL && strcmp(val, "never") == 0)
				opts.fsync = LMBOX_FSYNC_NEVER;
			else
				return cli_usage(cmd, "--fsync needs always or never");
			fsync_name = val;
		} else if (strcmp(argv[j], "--keep") == 0) {
			keep = 1;
			continue;
		} else {
			return cli_usage(cmd, "unknown argument '%s'", argv[j]);
		}
		j++;
	}
	if (parent == NULL && (parent = getenv("TMPDIR")) == NULL)
		parent = "/tmp";
	snprintf(path, sizeof(path), "%s/lmbox-bench-XXXXXX", parent);
	if (mkdtemp(path) == NULL) {
		cli_error(cmd, "mkdtemp %s: %s", path, strerror(errno));
		return CLI_EXIT_FAILED;
	}
	opts.compress_level = (int)level;
	ret = cli_store_open(cmd, path, &opts, LMBOX_OPEN_CREATE, &ctx.store);
	if (ret == 0) {
		printf("store             %s\n", path);
		ret = bench_run(&ctx, (int)level, fsync_name);
		lmbox_store_close(&ctx.store);
	}
	free(ctx.msg.data);
	if (!keep && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0) {
		cli_error(cmd, "removing %s: %s", path, strerror(errno));
		if (ret == 0)
			ret = CLI_EXIT_FAILED;
	}
	if (fflush(stdout) != 0 && ret == 0)
		ret = CLI_EXIT_FAILED;
	return ret;
}

const struct cli_command cli_cmd_bench = {
	"bench", "[--n N] [--dir DIR] [--level L] [--fsync always|never] [--batch B] [--keep]",
	"storage micro-benchmark on a generated corpus",
	"Create a store in a new directory under DIR (default $TMPDIR or /tmp),\n"
	"append N generated messages (default 10000; deterministic, realistic\n"
	"mail of a few KB, 30% multipart with HTML or a base64 attachment) and\n"
	"report: append msgs/s and MB/s, a metadata scan of all N messages in ms\n"
	"(median of 5), UIDL->message lookups/s, body read MB/s (decompressed,\n"
	"checksummed), the compression ratio on the corpus and on plain text\n"
	"mail, and the deletion of 10k messages (or N) in one commit in ms.\n"
	"MB is 10^6 bytes.  The store is removed afterwards unless --keep.\n"
	"  --level L   zlib level 0-9 (default 6)\n"
	"  --fsync M   always (a delivery's durability) or never (default)\n"
	"  --batch B   messages per commit when appending (default 1)\n",
	cmd_bench
};
