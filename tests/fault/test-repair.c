/*
 * test-repair.c: `lmbox check --repair` moves a malformed message record
 * aside.
 *
 * A store with two folders of messages is built; two message records in
 * the msgs database are then damaged with LMDB directly (their version
 * byte, so lmbox_msg_decode() rejects them), and the second one's body is
 * damaged too (a flipped byte in its compressed data).  Then, with the
 * admin tool ($LMBOX; without it, lmbox_check() itself):
 *   - check reports the records (exit 1, "malformed" lines);
 *   - check --repair saves each under DIR/lost+found: msg-F-U-T.rec holds
 *     the record's key and value exactly as they were; the intact body is
 *     msg-F-U-T.eml, byte-exact; the damaged one msg-F-U-T.blob, the blob
 *     exactly as stored in its segment; all 0600; exit 0;
 *   - a second check is clean (exit 0);
 *   - every other message reads back byte-exact, the damaged ones are
 *     gone, the folder counters match, and a new append works.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <lmdb.h>

#include "fault-util.h"
#include "lmbox-format.h"

#define NFOLDERS 2
#define NMSG 12

struct mail {
	uint32_t uid;
	unsigned char *data;
	size_t len;
};

struct target {
	unsigned int f, i;      /* mails[f][i] */
	int damage_body;
	unsigned char *rec;     /* key || value as damaged */
	size_t rec_len;
	unsigned char *blob;    /* the blob as stored (damage_body) */
	size_t blob_len;
};

static struct mail mails[NFOLDERS][NMSG];
static uint32_t folder_ids[NFOLDERS];
static const char *const folder_names[NFOLDERS] = { "INBOX", "Archive" };

static void build(const char *dir)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_ALWAYS, 6);

	for (unsigned int f = 0; f < NFOLDERS; f++) {
		folder_ids[f] = fault_folder(store, folder_names[f]);
		for (unsigned int i = 0; i < NMSG; i++) {
			struct lmbox_commit_result res;
			struct lmbox_append *append;
			struct lmbox_txn *txn;
			struct mail *m = &mails[f][i];

			m->data = fault_gen_mail(f * 1000 + i, 500 + i * 700, &m->len);
			CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
			CHECK_LM(store, lmbox_append_begin(txn, folder_ids[f], NULL, &append), "append");
			CHECK_LM(store, lmbox_append_write(append, m->data, m->len), "write");
			CHECK_LM(store, lmbox_append_finish(&append), "finish");
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
			CHECK(res.uid_count == 1 && res.uids[0] != 0, "no uid");
			m->uid = res.uids[0];
			lmbox_commit_result_free(&res);
		}
	}
	CHECK(fault_check(store, LMBOX_CHECK_BODIES, 1) == 0, "fresh store not clean");
	lmbox_store_close(&store);
}

/* Flip a byte in the middle of the compressed data of the blob meta names;
 * t->blob gets the blob (header + stored bytes) as it is afterwards. */
static void damage_blob(const char *dir, const struct lmbox_msg_meta *meta, struct target *t)
{
	char path[4096];
	unsigned char c;
	off_t at = (off_t)(meta->seg_offset + LMBOX_BLOB_HDR_SIZE + meta->stored_size / 2);
	int fd;

	snprintf(path, sizeof(path), "%s/seg/%08X", dir, meta->seg_id);
	CHECK((fd = open(path, O_RDWR)) >= 0, "%s: %s", path, strerror(errno));
	CHECK(pread(fd, &c, 1, at) == 1, "read %s", path);
	c ^= 0x5a;
	CHECK(pwrite(fd, &c, 1, at) == 1 && fsync(fd) == 0, "write %s", path);
	t->blob_len = LMBOX_BLOB_HDR_SIZE + meta->stored_size;
	t->blob = malloc(t->blob_len);
	CHECK(t->blob != NULL, "malloc");
	CHECK(pread(fd, t->blob, t->blob_len, (off_t)meta->seg_offset) == (ssize_t)t->blob_len,
	      "read blob");
	close(fd);
}

/* Damage the record of the target in place (and its body if asked);
 * t->rec gets key || value as it is now (what the repair must save). */
static void damage(const char *dir, struct target *t)
{
	uint32_t folder_id = folder_ids[t->f], uid = mails[t->f][t->i].uid;
	char path[4096];
	unsigned char key[8], *val, *saved;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 8, key }, v;
	struct lmbox_msg_meta meta;

	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	CHECK(mdb_env_create(&env) == 0, "mdb_env_create");
	CHECK(mdb_env_set_maxdbs(env, 16) == 0, "maxdbs");
	CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0, "open %s", path);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0, "txn");
	CHECK(mdb_dbi_open(txn, LMBOX_DB_MSGS, 0, &dbi) == 0, "dbi msgs");
	lmbox_msg_key_encode(key, folder_id, uid);
	CHECK(mdb_get(txn, dbi, &k, &v) == 0, "record of uid %u not found", uid);
	CHECK(lmbox_msg_decode(v.mv_data, v.mv_size, &meta) == 0, "record already bad");
	if (t->damage_body)
		damage_blob(dir, &meta, t);
	val = malloc(v.mv_size);
	CHECK(val != NULL, "malloc");
	memcpy(val, v.mv_data, v.mv_size);
	val[0] = 0xEE;  /* the format version byte */
	CHECK(lmbox_msg_decode(val, v.mv_size, &meta) < 0, "damage not detected by the decoder");
	v.mv_data = val;
	CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0, "put");
	CHECK(mdb_txn_commit(txn) == 0, "commit");
	mdb_env_close(env);

	t->rec_len = 8 + v.mv_size;
	saved = malloc(t->rec_len);
	CHECK(saved != NULL, "malloc");
	memcpy(saved, key, 8);
	memcpy(saved + 8, val, v.mv_size);
	free(val);
	t->rec = saved;
}

/* Run the CLI's check (or lmbox_check()) and return its exit code; its
 * output goes to out (appended). */
static int run_check(const char *dir, int repair, const char *out)
{
	const char *lmbox = getenv("LMBOX");
	int status;
	pid_t pid;

	if (lmbox == NULL || *lmbox == '\0') {
		struct lmbox_store *store;
		int found, left;

		store = fault_open(dir, LMBOX_FSYNC_ALWAYS, 6);
		found = fault_check(store, repair ? LMBOX_CHECK_REPAIR : 0, 1);
		CHECK(found >= 0, "check failed: %s", lmbox_store_errmsg(store));
		left = repair && found > 0 ? fault_check(store, 0, 1) : found;
		lmbox_store_close(&store);
		return left == 0 ? 0 : 1;
	}
	pid = fault_fork();
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(127);
		execl(lmbox, lmbox, "check", dir, repair ? "--repair" : NULL, (char *)NULL);
		_exit(127);
	}
	status = fault_wait(pid);
	CHECK(WIFEXITED(status), "lmbox check did not exit normally");
	return WEXITSTATUS(status);
}

static unsigned char *slurp(const char *path, size_t *len_r)
{
	struct stat st;
	unsigned char *buf;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0 && fstat(fd, &st) == 0, "%s: %s", path, strerror(errno));
	buf = malloc((size_t)st.st_size + 1);
	CHECK(buf != NULL, "malloc");
	CHECK(read(fd, buf, (size_t)st.st_size) == st.st_size, "read %s", path);
	buf[st.st_size] = '\0';
	close(fd);
	*len_r = (size_t)st.st_size;
	return buf;
}

/* lost+found must hold one msg-F-U-*.rec and one msg-F-U-*.ext (0600),
 * and nothing else of that message. */
static void find_saved(const char *dir, uint32_t folder_id, uint32_t uid, const char *ext,
		       char *rec, char *eml, size_t size)
{
	char lf[2048], prefix[64];
	struct dirent *d;
	unsigned int nrec = 0, neml = 0, nother = 0;
	DIR *dp;

	snprintf(lf, sizeof(lf), "%s/lost+found", dir);
	snprintf(prefix, sizeof(prefix), "msg-%u-%u-", folder_id, uid);
	CHECK((dp = opendir(lf)) != NULL, "%s: %s", lf, strerror(errno));
	while ((d = readdir(dp)) != NULL) {
		size_t n = strlen(d->d_name);
		struct stat st;
		char *path;

		if (d->d_name[0] == '.')
			continue;
		if (strncmp(d->d_name, prefix, strlen(prefix)) != 0)
			continue;
		if (n < 5) {
			nother++;
			continue;
		}
		if (strcmp(d->d_name + n - 4, ".rec") == 0) {
			path = rec;
			nrec++;
		} else if (n > strlen(ext) && strcmp(d->d_name + n - strlen(ext), ext) == 0) {
			path = eml;
			neml++;
		} else {
			nother++;
			continue;
		}
		snprintf(path, size, "%s/%s", lf, d->d_name);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
		      "%s: mode %o, not 0600", path, (unsigned int)(st.st_mode & 0777));
	}
	closedir(dp);
	CHECK(nrec == 1 && neml == 1 && nother == 0,
	      "lost+found holds %u .rec, %u %s, %u other files of %s (want 1, 1, 0)",
	      nrec, neml, ext, nother, prefix);
}

static int is_target(const struct target *targets, unsigned int n, unsigned int f,
		     unsigned int i)
{
	for (unsigned int j = 0; j < n; j++) {
		if (targets[j].f == f && targets[j].i == i)
			return 1;
	}
	return 0;
}

static void verify_store(const char *dir, const struct target *targets, unsigned int ntargets)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_ALWAYS, 6);
	struct lmbox_reader *reader;

	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	for (unsigned int f = 0; f < NFOLDERS; f++) {
		struct lmbox_folder_info info;
		struct lmbox_msg_iter *iter;
		struct lmbox_msg_meta meta;
		unsigned int i = 0, seen = 0, expect = NMSG;
		uint64_t psize = 0;
		int ret;

		CHECK_LM(store, lmbox_reader_folder(reader, folder_ids[f], &info), "folder");
		CHECK_LM(store, lmbox_msg_iter_init(reader, folder_ids[f], 1, &iter), "iter");
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			unsigned char *data;
			size_t size;

			while (i < NMSG && is_target(targets, ntargets, f, i))
				i++;
			CHECK(i < NMSG && meta.uid == mails[f][i].uid,
			      "folder %s: uid %u where %u was expected", folder_names[f], meta.uid,
			      i < NMSG ? mails[f][i].uid : 0);
			CHECK_LM(store, lmbox_body_read_all(store, &meta, &data, &size), "read body");
			CHECK(size == mails[f][i].len && memcmp(data, mails[f][i].data, size) == 0,
			      "folder %s uid %u: body differs", folder_names[f], meta.uid);
			psize += size;
			free(data);
			i++;
			seen++;
		}
		CHECK_LM(store, ret, "iter next");
		CHECK(lmbox_msg_iter_corrupt(iter) == 0, "iteration still skips a malformed record");
		lmbox_msg_iter_deinit(&iter);
		for (unsigned int j = 0; j < ntargets; j++)
			expect -= targets[j].f == f;
		CHECK(seen == expect, "folder %s: %u messages, want %u", folder_names[f], seen,
		      expect);
		CHECK(info.count == seen && info.psize_total == psize,
		      "folder %s: counters %u/%llu, found %u/%llu", folder_names[f], info.count,
		      (unsigned long long)info.psize_total, seen, (unsigned long long)psize);
	}
	for (unsigned int j = 0; j < ntargets; j++) {
		struct lmbox_msg_meta meta;

		CHECK(lmbox_reader_msg(reader, folder_ids[targets[j].f],
				       mails[targets[j].f][targets[j].i].uid, &meta) ==
		      LMBOX_ERR_NOTFOUND, "damaged message still there");
	}
	lmbox_reader_end(&reader);

	/* the store still takes mail, and stays clean */
	{
		struct lmbox_append *append;
		struct lmbox_txn *txn;
		size_t len;
		unsigned char *data = fault_gen_mail(4242, 3000, &len);

		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder_ids[targets[0].f], NULL, &append),
			 "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit after repair");
		free(data);
	}
	CHECK(fault_check(store, LMBOX_CHECK_BODIES, 1) == 0, "store not clean after an append");
	lmbox_store_close(&store);
}

int main(void)
{
	char *dir = fault_mkdtemp("repair");
	char out[4096], rec[8192] = "", body[8192] = "";
	struct target targets[] = {
		{ .f = 0, .i = 4, .damage_body = 0 },
		{ .f = 1, .i = 7, .damage_body = 1 },
	};
	const unsigned int ntargets = sizeof(targets) / sizeof(targets[0]);
	const char *lmbox = getenv("LMBOX");
	unsigned char *got, *text;
	size_t got_len, text_len;
	int code;

	fault_rmtree_at_exit(dir);
	snprintf(out, sizeof(out), "%s.out", dir);
	(void)unlink(out);
	build(dir);
	for (unsigned int j = 0; j < ntargets; j++)
		damage(dir, &targets[j]);

	code = run_check(dir, 0, out);
	CHECK(code == 1, "check of the damaged store exited %d, want 1", code);
	code = run_check(dir, 1, out);
	CHECK(code == 0, "check --repair exited %d, want 0", code);
	if (lmbox != NULL && *lmbox != '\0') {
		text = slurp(out, &text_len);
		fputs((const char *)text, stderr);
		for (unsigned int j = 0; j < ntargets; j++) {
			uint32_t fid = folder_ids[targets[j].f], uid = mails[targets[j].f][targets[j].i].uid;
			char line[128];

			snprintf(line, sizeof(line), "folder %u uid %u: message record is malformed\n",
				 fid, uid);
			CHECK(strstr((const char *)text, line) != NULL,
			      "check did not report uid %u", uid);
			snprintf(line, sizeof(line), "folder %u uid %u: message record is malformed "
				 "(moved aside: record", fid, uid);
			CHECK(strstr((const char *)text, line) != NULL,
			      "--repair did not say it moved uid %u", uid);
		}
		CHECK(strstr((const char *)text, "left after repair") != NULL, "no repair summary");
		free(text);
	}

	for (unsigned int j = 0; j < ntargets; j++) {
		const struct target *t = &targets[j];
		const struct mail *m = &mails[t->f][t->i];

		find_saved(dir, folder_ids[t->f], m->uid, t->damage_body ? ".blob" : ".eml",
			   rec, body, sizeof(rec));
		got = slurp(rec, &got_len);
		CHECK(got_len == t->rec_len && memcmp(got, t->rec, got_len) == 0,
		      "%s does not hold the record's key and value", rec);
		free(got);
		got = slurp(body, &got_len);
		if (t->damage_body) {
			CHECK(got_len == t->blob_len && memcmp(got, t->blob, got_len) == 0,
			      "%s is not the blob as stored", body);
		} else {
			CHECK(got_len == m->len && memcmp(got, m->data, got_len) == 0,
			      "%s is not the message's body", body);
		}
		free(got);
	}

	code = run_check(dir, 0, out);
	CHECK(code == 0, "check after the repair exited %d, want 0", code);
	verify_store(dir, targets, ntargets);
	code = run_check(dir, 0, out);
	CHECK(code == 0, "check after an append exited %d, want 0", code);

	(void)unlink(out);
	for (unsigned int j = 0; j < ntargets; j++) {
		free(targets[j].rec);
		free(targets[j].blob);
	}
	for (unsigned int f = 0; f < NFOLDERS; f++) {
		for (unsigned int i = 0; i < NMSG; i++)
			free(mails[f][i].data);
	}
	free(dir);
	printf("PASS: malformed records moved aside, store clean, other mail intact\n");
	return 0;
}
