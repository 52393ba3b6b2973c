/*
 * lmbox-cli-import.c: `lmbox import-maildir MAILDIR DIR` -- copy a Maildir++
 * tree into an lmbox store.  cur/ and new/ of MAILDIR become INBOX, each
 * ".Sub.Folder" directory the folder "Sub/Folder" (separator configurable).
 * Kept per message: flags from the ":2," info suffix (S R F D T), keywords
 * (letters a-z through dovecot-keywords), received date from the file's
 * mtime, and -- when dovecot-uidlist lists the file -- its UID, the folder's
 * UIDVALIDITY and next UID, and the POP3 UIDL of its P field.  Not
 * idempotent: importing twice appends twice.
 *
 * Diagnostics: unreadable files are reported on stderr and skipped; the
 * exit status is then 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "lmbox-cli.h"

/* Commit after this many messages or raw bytes: bounds the memory and
 * spill space of one transaction while keeping commits (fsyncs) few. */
#define IMPORT_BATCH_MSGS 1000
#define IMPORT_BATCH_BYTES (32ULL * 1024 * 1024)
#define MAX_KEYWORDS 26

struct uidlist_entry {
	char *base;     /* file name up to the ':' of the info suffix */
	uint32_t uid;
	char *uidl;     /* P field, or NULL */
};

struct uidlist {
	uint32_t uidvalidity, next_uid;
	struct uidlist_entry *entries;
	size_t count, alloc;
};

struct maildir_msg {
	char *path;
	const char *name;       /* file name within path */
	int64_t mtime;
	uint32_t uid;           /* 0 = not in uidlist */
	const char *uidl;       /* points into struct uidlist */
};

struct import_ctx {
	const struct cli_command *cmd;
	struct lmbox_store *store;
	char *keywords[MAX_KEYWORDS];
	unsigned int failures;
	uint64_t total_msgs, total_bytes;
};

static void *xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size);

	if (p == NULL) {
		fprintf(stderr, "lmbox import-maildir: out of memory\n");
		exit(CLI_EXIT_FAILED);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t len = strlen(s) + 1;

	return memcpy(xrealloc(NULL, len), s, len);
}

static size_t base_len(const char *name)
{
	const char *colon = strchr(name, ':');

	return colon == NULL ? strlen(name) : (size_t)(colon - name);
}

static int uidlist_cmp(const void *a, const void *b)
{
	const struct uidlist_entry *ea = a, *eb = b;

	return strcmp(ea->base, eb->base);
}

static int uidl_valid(const char *s)
{
	size_t len = strlen(s), i;

	if (len == 0 || len > LMBOX_MAX_UIDL_LEN)
		return 0;
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	}
	return 1;
}

/* Parse dovecot-uidlist (versions 1 and 3).  Missing file: empty list. */
static void uidlist_read(const char *dir, struct uidlist *list)
{
	char path[4096], *line = NULL, *p, *tok, *save, *uidl, *fname, end;
	size_t cap = 0;
	unsigned long version = 0, v;
	int first = 1;
	FILE *f;

	memset(list, 0, sizeof(*list));
	snprintf(path, sizeof(path), "%s/dovecot-uidlist", dir);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\r\n")] = '\0';
		if (first) {
			first = 0;
			version = strtoul(line, &p, 10);
			if (version == 1) {
				list->uidvalidity = (uint32_t)strtoul(p, &p, 10);
				list->next_uid = (uint32_t)strtoul(p, &p, 10);
				continue;
			}
			for (tok = strtok_r(p, " ", &save); tok != NULL;
			     tok = strtok_r(NULL, " ", &save)) {
				if (tok[0] == 'V')
					list->uidvalidity = (uint32_t)strtoul(tok + 1, NULL, 10);
				else if (tok[0] == 'N')
					list->next_uid = (uint32_t)strtoul(tok + 1, NULL, 10);
			}
			continue;
		}
		v = strtoul(line, &p, 10);
		if (v == 0 || v > UINT32_MAX || *p != ' ')
			continue;
		uidl = fname = NULL;
		if (version == 1) {
			fname = p + 1;
		} else {
			/* Extension fields, then " :filename". */
			for (;;) {
				while (*p == ' ')
					p++;
				if (*p == '\0')
					break;
				if (*p == ':') {
					fname = p + 1;
					break;
				}
				tok = p;
				p += strcspn(p, " ");
				end = *p;
				*p = '\0';
				if (tok[0] == 'P' && tok[1] != '\0')
					uidl = tok + 1;
				if (end == '\0')
					break;
				p++;
			}
		}
		if (fname == NULL || *fname == '\0')
			continue;
		if (list->count == list->alloc) {
			list->alloc = list->alloc == 0 ? 256 : list->alloc * 2;
			list->entries = xrealloc(list->entries,
						 list->alloc * sizeof(*list->entries));
		}
		list->entries[list->count].base = xrealloc(NULL, base_len(fname) + 1);
		memcpy(list->entries[list->count].base, fname, base_len(fname));
		list->entries[list->count].base[base_len(fname)] = '\0';
		list->entries[list->count].uid = (uint32_t)v;
		list->entries[list->count].uidl =
			uidl != NULL && uidl_valid(uidl) ? xstrdup(uidl) : NULL;
		list->count++;
	}
	free(line);
	fclose(f);
	if (list->count > 0)
		qsort(list->entries, list->count, sizeof(*list->entries), uidlist_cmp);
}

static void uidlist_free(struct uidlist *list)
{
	size_t i;

	for (i = 0; i < list->count; i++) {
		free(list->entries[i].base);
		free(list->entries[i].uidl);
	}
	free(list->entries);
}

static const struct uidlist_entry *
uidlist_find(const struct uidlist *list, const char *name)
{
	struct uidlist_entry key;
	char buf[1024];
	size_t len = base_len(name);

	if (list->count == 0 || len >= sizeof(buf))
		return NULL;
	memcpy(buf, name, len);
	buf[len] = '\0';
	key.base = buf;
	return bsearch(&key, list->entries, list->count, sizeof(key), uidlist_cmp);
}

/* dovecot-keywords: "N name" lines; letter 'a'+N in file names. */
static void keywords_read(struct import_ctx *ctx, const char *dir)
{
	char path[4096], *line = NULL, *p;
	size_t cap = 0;
	unsigned long idx;
	FILE *f;

	for (idx = 0; idx < MAX_KEYWORDS; idx++) {
		free(ctx->keywords[idx]);
		ctx->keywords[idx] = NULL;
	}
	snprintf(path, sizeof(path), "%s/dovecot-keywords", dir);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\r\n")] = '\0';
		idx = strtoul(line, &p, 10);
		if (p == line || *p != ' ' || idx >= MAX_KEYWORDS || p[1] == '\0')
			continue;
		free(ctx->keywords[idx]);
		ctx->keywords[idx] = xstrdup(p + 1);
	}
	free(line);
	fclose(f);
}

static int msg_cmp(const void *a, const void *b)
{
	const struct maildir_msg *ma = a, *mb = b;

	/* Known UIDs first in UID order, then the rest by mtime, name. */
	if ((ma->uid == 0) != (mb->uid == 0))
		return ma->uid == 0 ? 1 : -1;
	if (ma->uid != mb->uid)
		return ma->uid < mb->uid ? -1 : 1;
	if (ma->mtime != mb->mtime)
		return ma->mtime < mb->mtime ? -1 : 1;
	return strcmp(ma->name, mb->name);
}

static void scan_subdir(struct import_ctx *ctx, const char *dir, const char *sub,
			const struct uidlist *list, struct maildir_msg **msgs,
			size_t *count, size_t *alloc)
{
	char path[4096];
	const struct uidlist_entry *e;
	struct dirent *d;
	struct stat st;
	struct maildir_msg *m;
	DIR *dh;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((dh = opendir(path)) == NULL) {
		if (errno != ENOENT) {
			cli_error(ctx->cmd, "opendir %s: %s", path, strerror(errno));
			ctx->failures++;
		}
		return;
	}
	while ((d = readdir(dh)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		if (*count == *alloc) {
			*alloc = *alloc == 0 ? 256 : *alloc * 2;
			*msgs = xrealloc(*msgs, *alloc * sizeof(**msgs));
		}
		m = &(*msgs)[*count];
		m->path = xrealloc(NULL, strlen(path) + strlen(d->d_name) + 2);
		sprintf(m->path, "%s/%s", path, d->d_name);
		m->name = m->path + strlen(path) + 1;
		if (stat(m->path, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(m->path);
			continue;
		}
		m->mtime = st.st_mtime;
		e = uidlist_find(list, m->name);
		m->uid = e == NULL ? 0 : e->uid;
		m->uidl = e == NULL ? NULL : e->uidl;
		(*count)++;
	}
	closedir(dh);
}

/* Flags and keywords from the ":2," info suffix. */
static uint8_t parse_info(struct import_ctx *ctx, const char *name,
			  const char **kw, unsigned int *kw_count)
{
	const char *info = strstr(name, ":2,");
	uint8_t flags = 0;

	*kw_count = 0;
	if (info == NULL)
		return 0;
	for (info += 3; *info != '\0'; info++) {
		switch (*info) {
		case 'S': flags |= LMBOX_FLAG_SEEN; break;
		case 'R': flags |= LMBOX_FLAG_ANSWERED; break;
		case 'F': flags |= LMBOX_FLAG_FLAGGED; break;
		case 'D': flags |= LMBOX_FLAG_DRAFT; break;
		case 'T': flags |= LMBOX_FLAG_DELETED; break;
		default:
			if (*info >= 'a' && *info < 'a' + MAX_KEYWORDS &&
			    ctx->keywords[*info - 'a'] != NULL)
				kw[(*kw_count)++] = ctx->keywords[*info - 'a'];
			break;
		}
	}
	kw[*kw_count] = NULL;
	return flags;
}

/* Append one file to txn.  Returns bytes appended, or -1 (reported). */
static int64_t import_msg(struct import_ctx *ctx, struct lmbox_txn *txn,
			  uint32_t folder_id, const struct maildir_msg *m)
{
	struct lmbox_append_opts opts;
	struct lmbox_append *append;
	const char *kw[MAX_KEYWORDS + 1];
	unsigned int kw_count;
	unsigned char buf[65536];
	int64_t total = 0;
	ssize_t n;
	int fd, ret;

	if ((fd = open(m->path, O_RDONLY)) < 0) {
		cli_error(ctx->cmd, "open %s: %s", m->path, strerror(errno));
		return -1;
	}
	lmbox_append_opts_init(&opts);
	opts.received_date = m->mtime;
	opts.flags = parse_info(ctx, m->name, kw, &kw_count);
	opts.keywords = kw_count > 0 ? kw : NULL;
	opts.uid = m->uid;
	opts.uidl = m->uidl;
	if ((ret = lmbox_append_begin(txn, folder_id, &opts, &append)) < 0) {
		close(fd);
		cli_store_error(ctx->cmd, ctx->store, ret, m->path);
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if ((ret = lmbox_append_write(append, buf, (size_t)n)) < 0) {
			lmbox_append_abort(&append);
			close(fd);
			cli_store_error(ctx->cmd, ctx->store, ret, m->path);
			return -1;
		}
		total += n;
	}
	if (n < 0) {
		cli_error(ctx->cmd, "read %s: %s", m->path, strerror(errno));
		lmbox_append_abort(&append);
		close(fd);
		return -1;
	}
	close(fd);
	if ((ret = lmbox_append_finish(&append)) < 0) {
		cli_store_error(ctx->cmd, ctx->store, ret, m->path);
		return -1;
	}
	return total;
}

static int commit_batch(struct import_ctx *ctx, struct lmbox_txn **txn,
			const char *folder)
{
	int ret = lmbox_txn_commit(txn, NULL);

	if (ret < 0) {
		cli_store_error(ctx->cmd, ctx->store, ret, folder);
		return -1;
	}
	return 0;
}

/* Import the Maildir at dir (with cur/ and new/) into folder name. */
static int import_folder(struct import_ctx *ctx, const char *dir, const char *name)
{
	struct lmbox_folder_info info;
	struct maildir_msg *msgs = NULL;
	struct lmbox_txn *txn = NULL;
	struct uidlist list;
	size_t count = 0, alloc = 0, i, batch_msgs = 0, done = 0;
	uint64_t batch_bytes = 0, bytes = 0;
	char b1[32];
	int64_t n;
	int ret, raise_next;

	uidlist_read(dir, &list);
	keywords_read(ctx, dir);
	scan_subdir(ctx, dir, "cur", &list, &msgs, &count, &alloc);
	scan_subdir(ctx, dir, "new", &list, &msgs, &count, &alloc);
	if (count > 0)
		qsort(msgs, count, sizeof(*msgs), msg_cmp);

	ret = lmbox_folder_lookup(ctx->store, name, &info);
	if (ret == LMBOX_ERR_NOTFOUND) {
		ret = lmbox_folder_create(ctx->store, name, list.uidvalidity, NULL, &info.id);
		if (ret == 0)
			ret = lmbox_folder_get(ctx->store, info.id, &info);
	}
	if (ret < 0) {
		cli_store_error(ctx->cmd, ctx->store, ret, name);
		ctx->failures++;
		goto out;
	}
	if (list.uidvalidity != 0 && info.uidvalidity != list.uidvalidity)
		fprintf(stderr, "lmbox import-maildir: %s exists with another "
			"UIDVALIDITY: UIDs are not kept\n", name);

	raise_next = list.next_uid != 0 && info.uidvalidity == list.uidvalidity;
	for (i = 0; i <= count; i++) {
		/* Messages the uidlist does not know (new/ since the last
		 * sync) get UIDs past its next UID, as Dovecot would give
		 * them; later deliveries must not reuse UIDs it gave out. */
		if (raise_next && (i == count || msgs[i].uid == 0)) {
			if (txn != NULL) {
				if (commit_batch(ctx, &txn, name) < 0) {
					ctx->failures++;
					goto out;
				}
				done += batch_msgs;
				bytes += batch_bytes;
				batch_msgs = 0;
				batch_bytes = 0;
			}
			ret = lmbox_folder_update(ctx->store, info.id, 0, list.next_uid, NULL);
			if (ret < 0) {
				cli_store_error(ctx->cmd, ctx->store, ret, name);
				ctx->failures++;
			}
			raise_next = 0;
		}
		if (i == count)
			break;
		if (txn == NULL && (ret = lmbox_txn_begin(ctx->store, &txn)) < 0) {
			cli_store_error(ctx->cmd, ctx->store, ret, name);
			ctx->failures++;
			goto out;
		}
		n = import_msg(ctx, txn, info.id, &msgs[i]);
		if (n < 0) {
			ctx->failures++;
			continue;
		}
		batch_msgs++;
		batch_bytes += (uint64_t)n;
		if (batch_msgs >= IMPORT_BATCH_MSGS || batch_bytes >= IMPORT_BATCH_BYTES) {
			if (commit_batch(ctx, &txn, name) < 0) {
				ctx->failures++;
				goto out;
			}
			done += batch_msgs;
			bytes += batch_bytes;
			batch_msgs = 0;
			batch_bytes = 0;
		}
	}
	if (txn != NULL) {
		if (commit_batch(ctx, &txn, name) < 0) {
			ctx->failures++;
			goto out;
		}
		done += batch_msgs;
		bytes += batch_bytes;
	}
	printf("%s: %zu messages, %s\n", name, done, cli_fmt_bytes(bytes, b1));
	ctx->total_msgs += done;
	ctx->total_bytes += bytes;
out:
	lmbox_txn_abort(&txn);
	for (i = 0; i < count; i++)
		free(msgs[i].path);
	free(msgs);
	uidlist_free(&list);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_import_maildir(const struct cli_command *cmd, int argc, char **argv)
{
	struct lmbox_store_opts opts;
	struct import_ctx ctx;
	struct dirent *d;
	struct stat st;
	char *maildir = NULL, *dir = NULL, **subs = NULL, path[4096], name[4096], *p;
	char sep = '/', b1[32];
	size_t nsubs = 0, i;
	uint64_t level = 6;
	DIR *dh;
	int j, ret;

	lmbox_store_opts_init(&opts);
	for (j = 1; j < argc; j++) {
		if (strcmp(argv[j], "--sep") == 0) {
			if (j + 1 == argc || strlen(argv[j + 1]) != 1)
				return cli_usage(cmd, "--sep needs one character");
			sep = argv[++j][0];
		} else if (strcmp(argv[j], "--level") == 0) {
			if (j + 1 == argc || cli_parse_u64(argv[j + 1], 9, &level) < 0)
				return cli_usage(cmd, "--level needs 0-9");
			j++;
		} else if (strcmp(argv[j], "--no-fsync") == 0) {
			opts.fsync = LMBOX_FSYNC_NEVER;
		} else if (argv[j][0] == '-') {
			return cli_usage(cmd, "unknown option '%s'", argv[j]);
		} else if (maildir == NULL) {
			maildir = argv[j];
		} else if (dir == NULL) {
			dir = argv[j];
		} else {
			return cli_usage(cmd, "unexpected argument '%s'", argv[j]);
		}
	}
	if (dir == NULL)
		return cli_usage(cmd, "needs MAILDIR DIR");
	opts.compress_level = (int)level;
	if (stat(maildir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		cli_error(cmd, "%s: not a directory", maildir);
		return CLI_EXIT_FAILED;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.cmd = cmd;
	if ((ret = cli_store_open(cmd, dir, &opts, LMBOX_OPEN_CREATE, &ctx.store)) != 0)
		return ret;

	import_folder(&ctx, maildir, "INBOX");
	if ((dh = opendir(maildir)) == NULL) {
		cli_error(cmd, "opendir %s: %s", maildir, strerror(errno));
		ctx.failures++;
	} else {
		while ((d = readdir(dh)) != NULL) {
			if (d->d_name[0] != '.' || strcmp(d->d_name, ".") == 0 ||
			    strcmp(d->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s/cur", maildir, d->d_name);
			if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
				snprintf(path, sizeof(path), "%s/%s/new", maildir, d->d_name);
				if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
					continue;
			}
			subs = xrealloc(subs, (nsubs + 1) * sizeof(*subs));
			subs[nsubs++] = xstrdup(d->d_name);
		}
		closedir(dh);
	}
	if (nsubs > 0)
		qsort(subs, nsubs, sizeof(*subs), name_cmp);
	for (i = 0; i < nsubs; i++) {
		snprintf(name, sizeof(name), "%s", subs[i] + 1);
		for (p = name; *p != '\0'; p++) {
			if (*p == '.')
				*p = sep;
		}
		snprintf(path, sizeof(path), "%s/%s", maildir, subs[i]);
		if (strlen(name) > LMBOX_MAX_FOLDER_NAME || name[0] == '\0') {
			cli_error(cmd, "%s: bad folder name, skipped", path);
			ctx.failures++;
		} else {
			import_folder(&ctx, path, name);
		}
		free(subs[i]);
	}
	free(subs);
	for (i = 0; i < MAX_KEYWORDS; i++)
		free(ctx.keywords[i]);
	lmbox_store_close(&ctx.store);
	printf("imported %" PRIu64 " messages (%s)%s\n", ctx.total_msgs,
	       cli_fmt_bytes(ctx.total_bytes, b1),
	       ctx.failures > 0 ? ", with errors" : "");
	if (fflush(stdout) != 0)
		return CLI_EXIT_FAILED;
	return ctx.failures > 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

const struct cli_command cli_cmd_import_maildir = {
	"import-maildir", "MAILDIR DIR [--sep C] [--level N] [--no-fsync]",
	"copy a Maildir++ tree into a store (created if missing)",
	"cur/ and new/ of MAILDIR become INBOX; each Maildir++ folder \".A.B\"\n"
	"becomes the folder \"A/B\" (--sep C: \"A<C>B\"; names are kept as stored,\n"
	"i.e. modified UTF-7).  Per message: flags from the \":2,\" suffix (S seen,\n"
	"R answered, F flagged, D draft, T deleted), keywords from the letters\n"
	"a-z through dovecot-keywords, received date from the file's mtime.  When\n"
	"dovecot-uidlist lists a file, its UID, the folder's UIDVALIDITY and next\n"
	"UID, and its POP3 UIDL (P field) are kept, so POP3 clients see the same\n"
	"UIDLs as before.  Existing folders are appended to; importing twice\n"
	"imports twice.\n"
	"  --level N   zlib level 0-9 for the bodies (default 6)\n"
	"  --no-fsync  do not fsync (faster; rerun the import after a crash)\n"
	"Unreadable files are reported and skipped (exit status 1).\n",
	cmd_import_maildir
};
