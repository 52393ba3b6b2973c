/*
 * test-corrupt.c: damaged segment files and a damaged LMDB data file are
 * reported as errors, never a crash or a hang.
 *
 * A pristine store is built once; each case damages a fresh copy of it and
 * a child process opens it, lists every folder and message, reads every
 * body and runs lmbox_check(--bodies), reporting what it saw through a
 * pipe.  The child must exit normally (no signal, no SIGALRM timeout); the
 * damage must show as LMBOX_ERR_CORRUPT or LMBOX_ERR_CHECKSUM where it hits
 * data the store depends on, and lmbox_check() must count it.
 *
 * test-corrupt: damaged segments (bit flips in deflated and raw blobs, a
 * zeroed blob, a truncated and a missing segment file) and garbled LMDB
 * meta pages.
 * test-corrupt-mdb (built with -DCORRUPT_MDB): lmbox.mdb truncated, and
 * random bit flips in its pages.  Flips may land in unused space, so for
 * them only "no crash" is required.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "fault-util.h"

#define NMSG 40
#define MDB_FLIP_ROUNDS 30

struct blob {
	uint32_t uid, seg_id, codec;
	uint64_t offset, stored, phys;
};

struct outcome {
	int open_err;           /* 0 or the open's error */
	int list_err;           /* first error listing folders/messages */
	int read_err;           /* first body read error */
	uint32_t read_errs, read_ok, listed;
	int bad_err;            /* an error code outside CORRUPT/CHECKSUM seen */
	int check_meta;         /* lmbox_check(0) result */
	int check_bodies;       /* lmbox_check(BODIES) result */
	uint32_t target_err;    /* error reading the targeted UID, if any */
	int crashed;            /* the child did not exit normally */
};

/* Non-fatal: count the failure and go on, so one run shows every case. */
#define EXPECT(cond, ...) do { if (!(cond)) { \
	fprintf(stderr, "FAIL: "); fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); failures++; } } while (0)

#ifdef CORRUPT_MDB
/* built as test-corrupt-mdb: its own TESTS entry */
static const int mdb_only = 1;
#else
static const int mdb_only = 0;
#endif
static unsigned int failures;
static char *pristine;
static struct blob blobs[NMSG];
static uint32_t target_uid;

static int build_main(void *arg)
{
	int fd = *(int *)arg;
	struct lmbox_store *store = fault_open(pristine, LMBOX_FSYNC_NEVER, 6);
	uint32_t folder = fault_folder(store, "INBOX"), i;
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_txn *txn;
	unsigned char *data;
	char uidl[16];
	size_t len;
	struct blob b;

	fault_folder(store, "Archive");
	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	for (i = 0; i < NMSG; i++) {
		snprintf(uidl, sizeof(uidl), "c%u", i);
		if (i % 5 == 4) {
			/* incompressible: likely stored raw */
			len = 30000 + i * 100;
			data = malloc(len);
			CHECK(data != NULL, "malloc");
			struct fault_rng rng = { i };
			for (size_t j = 0; j < len; j++)
				data[j] = (unsigned char)fault_rng_next(&rng);
		} else {
			data = fault_gen_mail(i, i == 20 ? 3000000 : 2000 + i * 1500, &len);
		}
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
		lmbox_commit_result_free(&res);
		free(data);
	}
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	for (i = 1; i <= NMSG; i++) {
		CHECK_LM(store, lmbox_reader_msg(reader, folder, i, &meta), "msg");
		memset(&b, 0, sizeof(b));
		b.uid = meta.uid;
		b.seg_id = meta.seg_id;
		b.codec = meta.codec;
		b.offset = meta.seg_offset;
		b.stored = meta.stored_size;
		b.phys = meta.phys_size;
		fault_write_all(fd, &b, sizeof(b));
	}
	lmbox_reader_end(&reader);
	CHECK(fault_check(store, LMBOX_CHECK_BODIES, 1) == 0, "pristine store not clean");
	lmbox_store_close(&store);
	return 0;
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in, out;
	ssize_t n;

	in = open(from, O_RDONLY);
	CHECK(in >= 0, "open %s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(out >= 0, "create %s: %s", to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		fault_write_all(out, buf, (size_t)n);
	CHECK(n == 0, "read %s", from);
	close(in);
	close(out);
}

/* Copy the store's files (not the lock file, not spill files). */
static void copy_store(const char *from, const char *to)
{
	char a[4096], b[4096];
	struct dirent *d;
	DIR *dh;

	snprintf(a, sizeof(a), "%s/lmbox.mdb", from);
	snprintf(b, sizeof(b), "%s/lmbox.mdb", to);
	copy_file(a, b);
	snprintf(a, sizeof(a), "%s/seg", from);
	snprintf(b, sizeof(b), "%s/seg", to);
	CHECK(mkdir(b, 0700) == 0, "mkdir %s", b);
	dh = opendir(a);
	CHECK(dh != NULL, "opendir %s", a);
	while ((d = readdir(dh)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(a, sizeof(a), "%s/seg/%s", from, d->d_name);
		snprintf(b, sizeof(b), "%s/seg/%s", to, d->d_name);
		copy_file(a, b);
	}
	closedir(dh);
}

/* Path of segment seg_id (lmbox.h: DIR/seg/NNNNNNNN, hex). */
static void seg_path(const char *store, uint32_t seg_id, char *path, size_t size)
{
	snprintf(path, size, "%s/seg/%08X", store, seg_id);
	CHECK(access(path, F_OK) == 0, "no file for segment %u: %s", seg_id, path);
}

static void flip_byte(const char *path, uint64_t offset, unsigned char mask)
{
	unsigned char c;
	int fd = open(path, O_RDWR);

	CHECK(fd >= 0, "open %s", path);
	CHECK(pread(fd, &c, 1, (off_t)offset) == 1, "pread %s @%llu", path,
	      (unsigned long long)offset);
	c ^= mask;
	CHECK(pwrite(fd, &c, 1, (off_t)offset) == 1, "pwrite %s", path);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	CHECK(stat(path, &st) == 0, "stat %s", path);
	return (uint64_t)st.st_size;
}

static int is_corruption(int err)
{
	return err == LMBOX_ERR_CORRUPT || err == LMBOX_ERR_CHECKSUM;
}

static void note_err(struct outcome *o, int err)
{
	if (!is_corruption(err) && o->bad_err == 0)
		o->bad_err = err;
}

/* In the child: touch everything, fill o. */
static void access_all(const char *dir, struct outcome *o)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_folder_iter *fiter;
	struct lmbox_folder_info finfo;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	unsigned char *data;
	const char *errmsg;
	size_t len;
	int ret;

	lmbox_store_opts_init(&opts);
	ret = lmbox_store_open(dir, &opts, &store, &errmsg);
	if (ret < 0) {
		o->open_err = ret;
		note_err(o, ret);
		return;
	}
	ret = lmbox_folder_iter_init(store, &fiter);
	if (ret == 0) {
		while ((ret = lmbox_folder_iter_next(fiter, &finfo)) > 0) {
			if (lmbox_reader_begin(store, &reader) < 0)
				continue;
			if ((ret = lmbox_msg_iter_init(reader, finfo.id, 1, &iter)) < 0) {
				if (o->list_err == 0)
					o->list_err = ret;
				note_err(o, ret);
				lmbox_reader_end(&reader);
				continue;
			}
			while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
				o->listed++;
				ret = lmbox_body_read_all(store, &meta, &data, &len);
				if (ret < 0) {
					o->read_errs++;
					if (o->read_err == 0)
						o->read_err = ret;
					if (meta.uid == target_uid)
						o->target_err = (uint32_t)-ret;
					note_err(o, ret);
				} else {
					if (len != meta.phys_size) {
						/* a read that returns wrong bytes as success */
						o->read_errs++;
						o->bad_err = 1;
					}
					o->read_ok++;
					free(data);
				}
			}
			if (ret < 0) {
				if (o->list_err == 0)
					o->list_err = ret;
				note_err(o, ret);
			}
			lmbox_msg_iter_deinit(&iter);
			lmbox_reader_end(&reader);
		}
		lmbox_folder_iter_deinit(&fiter);
	}
	if (ret < 0) {
		if (o->list_err == 0)
			o->list_err = ret;
		note_err(o, ret);
	}
	o->check_meta = fault_check(store, 0, 0);
	o->check_bodies = fault_check(store, LMBOX_CHECK_BODIES, 0);
	lmbox_store_close(&store);
}

/* Damage a copy with damage(dir), access it in a child, return what it saw. */
static struct outcome run_case(const char *name, void (*damage)(const char *dir, void *arg),
			       void *arg)
{
	struct outcome o;
	char *dir = fault_mkdtemp("corrupt-case"), buf[128];
	int fds[2], status;
	pid_t pid;

	copy_store(pristine, dir);
	damage(dir, arg);
	CHECK(pipe(fds) == 0, "pipe");
	pid = fault_fork();
	if (pid == 0) {
		close(fds[0]);
		alarm(60);
		memset(&o, 0, sizeof(o));
		access_all(dir, &o);
		fault_write_all(fds[1], &o, sizeof(o));
		_exit(0);
	}
	close(fds[1]);
	memset(&o, 0, sizeof(o));
	if (fault_read_all(fds[0], &o, sizeof(o)) == 0)
		memset(&o, 0, sizeof(o));
	close(fds[0]);
	status = fault_wait(pid);
	fault_rmtree(dir);
	free(dir);
	if (!fault_exited(status, 0)) {
		EXPECT(0, "%s: accessing the damaged store: %s", name,
		       fault_status_str(status, buf, sizeof(buf)));
		o.crashed = 1;
		return o;
	}
	printf("%-22s open %d, list %d, reads ok %u / errors %u (first %d), check %d, "
	       "check --bodies %d\n", name, o.open_err, o.list_err, o.read_ok,
	       o.read_errs, o.read_err, o.check_meta, o.check_bodies);
	return o;
}

/* A damaged body must fail its read with CORRUPT/CHECKSUM and be counted
 * by check --bodies; the rest must read fine. */
static void expect_body_damage(const char *name, const struct outcome *o,
			       uint32_t min_errs, uint32_t max_errs)
{
	if (o->crashed)
		return;
	EXPECT(o->open_err == 0, "%s: open failed (%d) for damage in a segment", name,
	      o->open_err);
	EXPECT(o->list_err == 0, "%s: listing failed (%d) for damage in a segment", name,
	      o->list_err);
	EXPECT(o->read_errs >= min_errs && o->read_errs <= max_errs,
	      "%s: %u body read errors, expected %u-%u", name, o->read_errs,
	      min_errs, max_errs);
	EXPECT(o->bad_err == 0, "%s: reported as %s, not CORRUPT/CHECKSUM", name,
	      o->bad_err == 1 ? "success with wrong length" : lmbox_strerror(o->bad_err));
	EXPECT(o->check_bodies >= (int)min_errs, "%s: check --bodies found %d problems",
	      name, o->check_bodies);
}

static const struct blob *find_blob(int raw)
{
	unsigned int i;

	for (i = 0; i < NMSG; i++) {
		if ((raw ? blobs[i].codec == LMBOX_CODEC_RAW :
		     blobs[i].codec != LMBOX_CODEC_RAW) && blobs[i].stored > 100 &&
		    blobs[i].uid != 21)
			return &blobs[i];
	}
	return NULL;
}

static void dmg_flip_blob(const char *dir, void *arg)
{
	const struct blob *b = arg;
	char path[4096];

	seg_path(dir, b->seg_id, path, sizeof(path));
	flip_byte(path, b->offset + b->stored / 2, 0x10);
}

static void dmg_flip_blob_end(const char *dir, void *arg)
{
	const struct blob *b = arg;
	char path[4096];

	seg_path(dir, b->seg_id, path, sizeof(path));
	flip_byte(path, b->offset + b->stored - 1, 0x01);
}

static void dmg_zero_blob(const char *dir, void *arg)
{
	const struct blob *b = arg;
	char path[4096];
	unsigned char *zeros = calloc(1, b->stored);
	int fd;

	seg_path(dir, b->seg_id, path, sizeof(path));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && zeros != NULL, "open %s", path);
	CHECK(pwrite(fd, zeros, b->stored, (off_t)b->offset) == (ssize_t)b->stored, "pwrite");
	close(fd);
	free(zeros);
}

static void dmg_truncate_seg(const char *dir, void *arg)
{
	const struct blob *b = arg;
	char path[4096];

	seg_path(dir, b->seg_id, path, sizeof(path));
	CHECK(truncate(path, (off_t)(b->offset + b->stored / 2)) == 0, "truncate");
}

static void dmg_remove_seg(const char *dir, void *arg)
{
	const struct blob *b = arg;
	char path[4096];

	seg_path(dir, b->seg_id, path, sizeof(path));
	CHECK(unlink(path) == 0, "unlink %s", path);
}

static void dmg_truncate_mdb(const char *dir, void *arg)
{
	uint64_t num = *(uint64_t *)arg;
	char path[4096];

	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	CHECK(truncate(path, (off_t)(file_size(path) * num / 8)) == 0, "truncate");
}

static void dmg_mdb_meta(const char *dir, void *arg)
{
	char path[4096];
	unsigned int i;

	(void)arg;
	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	/* both meta pages (0 and 1, 4 KiB pages): magic and root pointers */
	for (i = 16; i < 128; i += 5) {
		flip_byte(path, i, 0xa5);
		flip_byte(path, 4096 + i, 0x5a);
	}
}

static void dmg_mdb_flips(const char *dir, void *arg)
{
	struct fault_rng rng = { *(uint64_t *)arg };
	char path[4096];
	uint64_t size, off;
	unsigned int i;

	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	size = file_size(path);
	for (i = 0; i < 8; i++) {
		off = 8192 + fault_rng_below(&rng, size - 8192);
		flip_byte(path, off, (unsigned char)(1u << fault_rng_below(&rng, 8)));
	}
}

int main(void)
{
	const struct blob *deflated, *raw, *last;
	struct outcome o;
	unsigned int i, detected = 0, crashed = 0, flip_rounds;
	uint64_t arg;
	int fds[2];
	double t0 = fault_now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	pristine = fault_mkdtemp("corrupt-pristine");
	fault_rmtree_at_exit(pristine);
	CHECK(pipe(fds) == 0, "pipe");
	fault_run_child("build", build_main, &fds[1]);
	close(fds[1]);
	for (i = 0; i < NMSG; i++)
		CHECK(fault_read_all(fds[0], &blobs[i], sizeof(blobs[i])) == 1, "blob list");
	close(fds[0]);
	deflated = find_blob(0);
	raw = find_blob(1);
	last = &blobs[NMSG - 1];
	CHECK(deflated != NULL, "no deflated message in the store");

	if (mdb_only) {
		arg = 4;
		o = run_case("mdb: truncated to 1/2", dmg_truncate_mdb, &arg);
		EXPECT(o.crashed || o.open_err != 0 || o.list_err != 0 || o.read_errs > 0 ||
		       o.check_meta != 0, "lmbox.mdb truncated to half: nothing noticed");
		arg = 1;
		o = run_case("mdb: truncated to 1/8", dmg_truncate_mdb, &arg);
		EXPECT(o.crashed || o.open_err != 0 || o.list_err != 0 || o.read_errs > 0 ||
		       o.check_meta != 0, "lmbox.mdb truncated to 1/8: nothing noticed");
		/* Fixed seeds: the same flips every run (the page layout is
		 * deterministic), so a pass or a crash repeats. */
		flip_rounds = getenv("FAULT_FLIP_ROUNDS") != NULL ?
			(unsigned int)strtoul(getenv("FAULT_FLIP_ROUNDS"), NULL, 10) :
			MDB_FLIP_ROUNDS;
		for (i = 0; i < flip_rounds; i++) {
			char name[32];

			arg = i + 1;
			snprintf(name, sizeof(name), "mdb: 8 flips #%u", i + 1);
			o = run_case(name, dmg_mdb_flips, &arg);
			if (o.crashed)
				crashed++;
			else if (o.open_err != 0 || o.list_err != 0 || o.read_errs > 0 ||
				 o.check_meta != 0 || o.check_bodies != 0)
				detected++;
		}
		printf("mdb random flips: %u of %u noticed, %u crashed (%.1f s)\n",
		       detected, flip_rounds, crashed, fault_now() - t0);
	} else {
		/* Segments. */
		target_uid = deflated->uid;
		o = run_case("seg: flip mid-blob", dmg_flip_blob, (void *)deflated);
		expect_body_damage("seg: flip mid-blob", &o, 1, 1);
		EXPECT(o.crashed || o.target_err != 0, "the damaged message read fine");
		o = run_case("seg: flip blob end", dmg_flip_blob_end, (void *)deflated);
		expect_body_damage("seg: flip blob end", &o, 1, 1);
		o = run_case("seg: zeroed blob", dmg_zero_blob, (void *)deflated);
		expect_body_damage("seg: zeroed blob", &o, 1, 1);
		if (raw != NULL) {
			target_uid = raw->uid;
			o = run_case("seg: flip raw blob", dmg_flip_blob, (void *)raw);
			expect_body_damage("seg: flip raw blob", &o, 1, 1);
		} else {
			printf("(no message was stored raw; raw flip case skipped)\n");
		}
		target_uid = last->uid;
		o = run_case("seg: truncated", dmg_truncate_seg, (void *)last);
		expect_body_damage("seg: truncated", &o, 1, NMSG);
		o = run_case("seg: file removed", dmg_remove_seg, (void *)last);
		EXPECT(o.crashed || o.read_errs >= 1, "removed segment: no read error");
		EXPECT(o.crashed || o.check_bodies >= 1,
		       "removed segment: check --bodies found nothing");

		/* LMDB's own validation of its meta pages. */
		o = run_case("mdb: meta pages", dmg_mdb_meta, NULL);
		EXPECT(o.crashed || o.open_err != 0, "lmbox.mdb with garbled meta pages opened");
		EXPECT(o.crashed || is_corruption(o.open_err),
		       "garbled meta pages reported as %s, not CORRUPT", lmbox_strerror(o.open_err));
		printf("segment cases done (%.1f s)\n", fault_now() - t0);
	}
	fault_rmtree(pristine);
	free(pristine);
	if (failures > 0)
		printf("%u expectations failed\n", failures);
	return failures == 0 ? 0 : 1;
}
