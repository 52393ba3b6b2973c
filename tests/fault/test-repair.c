/*
 * test-repair.c: `lmbox check --repair` moves a malformed message record
 * aside.
 *
 * A store with two folders of messages is built; one message record in
 * the msgs database is then damaged with LMDB directly (its version byte,
 * so lmbox_msg_decode() rejects it).  Then, with the admin tool ($LMBOX;
 * without it, lmbox_check() itself):
 *   - check reports the record (exit 1, a "malformed" line);
 *   - check --repair saves it under DIR/lost+found: msg-F-U-T.rec holds
 *     the record's key and value exactly as they were, msg-F-U-T.eml the
 *     message body, byte-exact (both 0600), and exits 0;
 *   - a second check is clean (exit 0);
 *   - every other message reads back byte-exact, the damaged one is gone,
 *     the folder counters match, and a new append works.
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

/* Damage the record of (folder_id, uid) in place; returns key || value as
 * it is now (what the repair must save), *len_r its length. */
static unsigned char *damage(const char *dir, uint32_t folder_id, uint32_t uid, size_t *len_r)
{
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
	val = malloc(v.mv_size);
	CHECK(val != NULL, "malloc");
	memcpy(val, v.mv_data, v.mv_size);
	val[0] = 0xEE;  /* the format version byte */
	CHECK(lmbox_msg_decode(val, v.mv_size, &meta) < 0, "damage not detected by the decoder");
	v.mv_data = val;
	CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0, "put");
	CHECK(mdb_txn_commit(txn) == 0, "commit");
	mdb_env_close(env);

	*len_r = 8 + v.mv_size;
	saved = malloc(*len_r);
	CHECK(saved != NULL, "malloc");
	memcpy(saved, key, 8);
	memcpy(saved + 8, val, v.mv_size);
	free(val);
	return saved;
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

/* lost+found must hold one NAME-*.rec and one NAME-*.eml (0600). */
static void find_saved(const char *dir, uint32_t folder_id, uint32_t uid,
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
		if (strncmp(d->d_name, prefix, strlen(prefix)) != 0 || n < 4) {
			nother++;
			continue;
		}
		if (strcmp(d->d_name + n - 4, ".rec") == 0) {
			path = rec;
			nrec++;
		} else if (strcmp(d->d_name + n - 4, ".eml") == 0) {
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
	      "lost+found holds %u .rec, %u .eml, %u other files (want 1, 1, 0)",
	      nrec, neml, nother);
}

static void verify_store(const char *dir, unsigned int bad_f, unsigned int bad_i)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_ALWAYS, 6);
	struct lmbox_reader *reader;

	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	for (unsigned int f = 0; f < NFOLDERS; f++) {
		struct lmbox_folder_info info;
		struct lmbox_msg_iter *iter;
		struct lmbox_msg_meta meta;
		unsigned int i = 0, seen = 0;
		uint64_t psize = 0;
		int ret;

		CHECK_LM(store, lmbox_reader_folder(reader, folder_ids[f], &info), "folder");
		CHECK_LM(store, lmbox_msg_iter_init(reader, folder_ids[f], 1, &iter), "iter");
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			unsigned char *data;
			size_t size;

			if (f == bad_f && i == bad_i)
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
		CHECK(seen == (f == bad_f ? NMSG - 1 : NMSG), "folder %s: %u messages",
		      folder_names[f], seen);
		CHECK(info.count == seen && info.psize_total == psize,
		      "folder %s: counters %u/%llu, found %u/%llu", folder_names[f], info.count,
		      (unsigned long long)info.psize_total, seen, (unsigned long long)psize);
	}
	{
		struct lmbox_msg_meta meta;

		CHECK(lmbox_reader_msg(reader, folder_ids[bad_f], mails[bad_f][bad_i].uid,
				       &meta) == LMBOX_ERR_NOTFOUND, "damaged message still there");
	}
	lmbox_reader_end(&reader);

	/* the store still takes mail, and stays clean */
	{
		struct lmbox_append *append;
		struct lmbox_txn *txn;
		size_t len;
		unsigned char *data = fault_gen_mail(4242, 3000, &len);

		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder_ids[bad_f], NULL, &append), "append");
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
	char out[4096], rec[8192] = "", eml[8192] = "";
	unsigned char *want_rec, *got, *text;
	size_t want_len, got_len, text_len;
	const unsigned int bad_f = 0, bad_i = 4;
	int code;

	fault_rmtree_at_exit(dir);
	snprintf(out, sizeof(out), "%s.out", dir);
	(void)unlink(out);
	build(dir);
	want_rec = damage(dir, folder_ids[bad_f], mails[bad_f][bad_i].uid, &want_len);

	code = run_check(dir, 0, out);
	CHECK(code == 1, "check of the damaged store exited %d, want 1", code);
	code = run_check(dir, 1, out);
	CHECK(code == 0, "check --repair exited %d, want 0", code);
	if (getenv("LMBOX") != NULL && *getenv("LMBOX") != '\0') {
		char line[128];

		text = slurp(out, &text_len);
		fputs((const char *)text, stderr);
		snprintf(line, sizeof(line), "folder %u uid %u: message record is malformed\n",
			 folder_ids[bad_f], mails[bad_f][bad_i].uid);
		CHECK(strstr((const char *)text, line) != NULL, "check did not report the record");
		snprintf(line, sizeof(line), "folder %u uid %u: message record is malformed "
			 "(moved aside: record", folder_ids[bad_f], mails[bad_f][bad_i].uid);
		CHECK(strstr((const char *)text, line) != NULL, "--repair did not say it moved it");
		CHECK(strstr((const char *)text, "left after repair") != NULL, "no repair summary");
		free(text);
	}

	find_saved(dir, folder_ids[bad_f], mails[bad_f][bad_i].uid, rec, eml, sizeof(rec));
	got = slurp(rec, &got_len);
	CHECK(got_len == want_len && memcmp(got, want_rec, want_len) == 0,
	      "%s does not hold the record's key and value", rec);
	free(got);
	got = slurp(eml, &got_len);
	CHECK(got_len == mails[bad_f][bad_i].len &&
	      memcmp(got, mails[bad_f][bad_i].data, got_len) == 0,
	      "%s is not the message's body", eml);
	free(got);

	code = run_check(dir, 0, out);
	CHECK(code == 0, "check after the repair exited %d, want 0", code);
	verify_store(dir, bad_f, bad_i);
	code = run_check(dir, 0, out);
	CHECK(code == 0, "check after an append exited %d, want 0", code);

	(void)unlink(out);
	free(want_rec);
	for (unsigned int f = 0; f < NFOLDERS; f++) {
		for (unsigned int i = 0; i < NMSG; i++)
			free(mails[f][i].data);
	}
	free(dir);
	printf("PASS: malformed record moved aside, store clean, other mail intact\n");
	return 0;
}
