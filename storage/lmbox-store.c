/*
 * lmbox-store.c: opening and closing a store, the per-process registry of
 * LMDB environments (one per store file, refcounted, never used across
 * fork), the format version check, and the store-wide u64 values.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "lmbox-private.h"

#ifndef NFS_SUPER_MAGIC
#  define NFS_SUPER_MAGIC 0x6969
#endif

/* Fork detection without a getpid() syscall on every call: a counter
 * bumped in the child of every fork() (pthread_atfork). */
static unsigned int lmbox_fork_gen;
static pthread_once_t lmbox_atfork_once = PTHREAD_ONCE_INIT;
static bool lmbox_atfork_ok;

static void lmbox_atfork_child(void)
{
	__atomic_add_fetch(&lmbox_fork_gen, 1, __ATOMIC_RELAXED);
}

static void lmbox_atfork_init(void)
{
	lmbox_atfork_ok = pthread_atfork(NULL, NULL, lmbox_atfork_child) == 0;
}

bool lmbox_same_process(const struct lmbox_store *store)
{
	if (lmbox_atfork_ok)
		return store->fork_gen == __atomic_load_n(&lmbox_fork_gen, __ATOMIC_RELAXED);
	return store->pid == getpid();
}

static pthread_mutex_t lmbox_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lmbox_env *lmbox_registry;
static __thread char lmbox_open_errmsg[LMBOX_ERRMSG_SIZE];

void lmbox_store_opts_init(struct lmbox_store_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->compress_level = LMBOX_DEFAULT_COMPRESS_LEVEL;
	opts->fsync = LMBOX_FSYNC_ALWAYS;
	opts->map_initial = LMBOX_DEFAULT_MAP_INITIAL;
	opts->map_max = LMBOX_DEFAULT_MAP_MAX;
	opts->segment_max = LMBOX_DEFAULT_SEGMENT_MAX;
	opts->max_readers = LMBOX_DEFAULT_MAX_READERS;
	opts->file_mode = 0600;
}

int64_t lmbox_now(void)
{
	return (int64_t)time(NULL);
}

void lmbox_random_bytes(void *buf, size_t size)
{
	unsigned char *p = buf;
	size_t pos = 0;

	while (pos < size) {
		ssize_t n = getrandom(p + pos, size - pos, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* no entropy syscall: still unique enough for GUIDs */
			for (; pos < size; pos++)
				p[pos] = (unsigned char)(random() ^ getpid() ^ time(NULL));
			break;
		}
		pos += (size_t)n;
	}
}

mode_t lmbox_dir_mode(mode_t file_mode)
{
	mode_t mode = file_mode & 0777;

	if (mode & 0400) mode |= 0100;
	if (mode & 0040) mode |= 0010;
	if (mode & 0004) mode |= 0001;
	return mode;
}

static char *lmbox_path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	if (p != NULL)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

/* mkdir -p of path */
static int lmbox_mkdir_parents(struct lmbox_store *store, const char *path, mode_t mode)
{
	char *copy = strdup(path), *p;
	int ret = 0;

	if (copy == NULL)
		return LMBOX_ERR_NOMEM;
	for (p = copy + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, mode) < 0 && errno != EEXIST) {
			ret = lmbox_set_errno(store, errno, "mkdir(%s) failed", copy);
			break;
		}
		if (c == '\0')
			break;
		*p = c;
	}
	free(copy);
	return ret;
}

int lmbox_store_check_usable(struct lmbox_store *store, bool write)
{
	if (!lmbox_same_process(store)) {
		/* don't touch the parent's environment: not even errmsg
		 * formatting needs more than this */
		return lmbox_set_error(store, LMBOX_ERR_FORK,
			"store %s was opened in process %ld and used in %ld after fork",
			store->dir, (long)store->pid, (long)getpid());
	}
	if (write && (store->opts.flags & LMBOX_OPEN_RDONLY) != 0) {
		return lmbox_set_error(store, LMBOX_ERR_READONLY,
			"store %s is opened read-only", store->dir);
	}
	return 0;
}

/* ------------------------------------------------------------ open/close */

static const struct {
	const char *name;
	size_t off;
	unsigned int flags;
} lmbox_dbs[] = {
	{ LMBOX_DB_META, offsetof(struct lmbox_env, dbi_meta), 0 },
	{ LMBOX_DB_VALUES, offsetof(struct lmbox_env, dbi_values), 0 },
	{ LMBOX_DB_FOLDERS, offsetof(struct lmbox_env, dbi_folders), 0 },
	{ LMBOX_DB_NAMES, offsetof(struct lmbox_env, dbi_names), MDB_DUPSORT | MDB_DUPFIXED },
	{ LMBOX_DB_MSGS, offsetof(struct lmbox_env, dbi_msgs), 0 },
	{ LMBOX_DB_UIDLS, offsetof(struct lmbox_env, dbi_uidls), MDB_DUPSORT | MDB_DUPFIXED },
	{ LMBOX_DB_SEGS, offsetof(struct lmbox_env, dbi_segs), 0 },
	{ LMBOX_DB_RECLAIM, offsetof(struct lmbox_env, dbi_reclaim), 0 },
	{ LMBOX_DB_BLOBS, offsetof(struct lmbox_env, dbi_blobs), 0 },
	{ LMBOX_DB_PENDING, offsetof(struct lmbox_env, dbi_pending), 0 },
	{ LMBOX_DB_DICTS, offsetof(struct lmbox_env, dbi_dicts), 0 },
};

/* Open the databases and check the format.  write = false: a read-only
 * transaction, which never waits for a writer; returns 1 if something is
 * missing that only a write transaction can create. */
static int lmbox_env_init_dbs_txn(struct lmbox_store *store, struct lmbox_env *env,
				  bool create, bool write)
{
	MDB_txn *txn;
	uint32_t format;
	bool created_blobs = false;
	int rc, ret = 0;

	rc = mdb_txn_begin(env->env, NULL, write ? 0 : MDB_RDONLY, &txn);
	for (int attempt = 0; rc == MDB_MAP_RESIZED && attempt < 3; attempt++) {
		/* another process grew the map between our mdb_env_open() and
		 * here (concurrent deliveries to one user): adopt its size */
		MDB_envinfo info;

		if ((rc = mdb_env_set_mapsize(env->env, 0)) != 0)
			break;
		if (mdb_env_info(env->env, &info) == 0)
			env->map_size = info.me_mapsize;
		rc = mdb_txn_begin(env->env, NULL, write ? 0 : MDB_RDONLY, &txn);
	}
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cannot begin transaction", store->mdb_path);
	for (size_t i = 0; i < sizeof(lmbox_dbs) / sizeof(lmbox_dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)env + lmbox_dbs[i].off);

		rc = mdb_dbi_open(txn, lmbox_dbs[i].name, lmbox_dbs[i].flags, dbi);
		if (rc == MDB_NOTFOUND && write) {
			rc = mdb_dbi_open(txn, lmbox_dbs[i].name,
					  lmbox_dbs[i].flags | MDB_CREATE, dbi);
			created_blobs = created_blobs || dbi == &env->dbi_blobs;
		}
		if (rc == MDB_NOTFOUND && dbi == &env->dbi_pending && env->rdonly) {
			/* a store from before it, read-only: nothing is pending */
			continue;
		}
		if (rc == MDB_NOTFOUND && dbi == &env->dbi_dicts && env->rdonly) {
			/* a store from before codec 4, read-only: no dictionaries */
			env->has_dicts = false;
			continue;
		}
		if (rc == MDB_NOTFOUND) {
			if (!write && !env->rdonly &&
			    (create || dbi == &env->dbi_blobs ||
			     dbi == &env->dbi_pending || dbi == &env->dbi_dicts)) {
				ret = 1;
				goto out;
			}
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: not an lmbox store (no \"%s\" database)",
				store->mdb_path, lmbox_dbs[i].name);
			goto out;
		}
		if (rc != 0) {
			ret = lmbox_set_mdb_error(store, rc, "%s: opening database %s",
						  store->mdb_path, lmbox_dbs[i].name);
			goto out;
		}
		if (dbi == &env->dbi_pending)
			env->has_pending = true;
		if (dbi == &env->dbi_dicts)
			env->has_dicts = true;
	}
	/* the env's dbis must be set before the meta helpers are used */
	ret = lmbox_meta_get_u32(store, txn, LMBOX_META_FORMAT, &format);
	if (ret == LMBOX_ERR_NOTFOUND) {
		if (!create || env->rdonly) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: store is not initialized (no format version)",
				store->mdb_path);
			goto out;
		}
		if (!write) {
			ret = 1;
			goto out;
		}
		format = LMBOX_FORMAT_BASE;
		if ((ret = lmbox_meta_put_u32(store, txn, LMBOX_META_FORMAT, format)) < 0 ||
		    (ret = lmbox_meta_put_u32(store, txn, LMBOX_META_NEXT_FOLDER_ID, 1)) < 0 ||
		    (ret = lmbox_meta_put_u32(store, txn, LMBOX_META_NEXT_SEG_ID, 1)) < 0 ||
		    (ret = lmbox_meta_put_u32(store, txn, LMBOX_META_CUR_SEG, 0)) < 0 ||
		    (ret = lmbox_meta_put_u32(store, txn, LMBOX_META_LAST_UIDVALIDITY, 0)) < 0)
			goto out;
	} else if (ret < 0) {
		goto out;
	}
	if (format > LMBOX_FORMAT_VERSION) {
		ret = lmbox_set_error(store, LMBOX_ERR_VERSION,
			"%s: store format version %u is newer than this library's %u: "
			"upgrade lmbox", store->mdb_path, format, LMBOX_FORMAT_VERSION);
		goto out;
	}
	if (format == 0) {
		ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store format version 0 is invalid", store->mdb_path);
		goto out;
	}
	/* a store from before the live-blob index: build it now, so hole
	 * punching never trusts an empty index */
	if (created_blobs && (ret = lmbox_blobs_rebuild(store, txn)) < 0)
		goto out;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		ret = lmbox_set_mdb_error(store, rc, "%s: commit failed", store->mdb_path);
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return ret;
}

static int lmbox_env_init_dbs(struct lmbox_store *store, struct lmbox_env *env,
			      bool create)
{
	int ret = lmbox_env_init_dbs_txn(store, env, create, false);

	if (ret == 1)
		ret = lmbox_env_init_dbs_txn(store, env, create, true);
	return ret;
}

/* Open the databases of env for store and check the format; on success
 * env has its first reference. */
static int lmbox_env_attach_dbs(struct lmbox_store *store, struct lmbox_env *env,
				bool create)
{
	int ret;

	store->env = env; /* the meta helpers find the dbis through it */
	ret = lmbox_env_init_dbs(store, env, create);
	store->env = NULL;
	if (ret < 0)
		return ret;
	env->refcount = 1;
	return 0;
}

static int lmbox_env_create(struct lmbox_store *store, bool create, struct lmbox_env **env_r)
{
	const struct lmbox_store_opts *opts = &store->opts;
	struct lmbox_env *env;
	unsigned int flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
	MDB_envinfo info;
	MDB_stat mst;
	struct stat st;
	int rc, ret, dead;

	env = calloc(1, sizeof(*env));
	if (env == NULL)
		return LMBOX_ERR_NOMEM;
	env->pid = getpid();
	env->rdonly = (opts->flags & LMBOX_OPEN_RDONLY) != 0;
	env->nosync = opts->fsync == LMBOX_FSYNC_NEVER;
	if (env->rdonly)
		flags |= MDB_RDONLY;
	if (opts->fsync == LMBOX_FSYNC_NEVER)
		flags |= MDB_NOSYNC;
	else
		flags |= MDB_NOMETASYNC; /* synced by lmbox_env_sync() */
	if ((rc = mdb_env_create(&env->env)) != 0) {
		free(env);
		return lmbox_set_mdb_error(store, rc, "mdb_env_create failed");
	}
	mdb_env_set_maxreaders(env->env, opts->max_readers);
	mdb_env_set_maxdbs(env->env, 16);
	mdb_env_set_mapsize(env->env, opts->map_initial);
	rc = mdb_env_open(env->env, store->mdb_path, flags, opts->file_mode);
	if (rc != 0) {
		ret = lmbox_set_mdb_error(store, rc, "%s: cannot open LMDB environment",
					  store->mdb_path);
		goto fail;
	}
	/* tests/fault/test-map-resized: stop here so that another process
	 * can grow the map before our first transaction */
	if (getenv("LMBOX_TEST_STOP_AFTER_ENV_OPEN") != NULL)
		(void)raise(SIGSTOP);
	/* the last page first, then the file's size: another process may
	 * commit in between, and the file only grows (read the other way
	 * round, a commit in between looked like a truncated file) */
	mdb_env_info(env->env, &info);
	env->map_size = info.me_mapsize;
	if (stat(store->mdb_path, &st) < 0) {
		ret = lmbox_set_errno(store, errno, "stat(%s) failed", store->mdb_path);
		goto fail;
	}
	env->dev = st.st_dev;
	env->ino = st.st_ino;
	/* LMDB would fault (SIGBUS) reading pages past the end of a
	 * truncated file: refuse it here */
	if (mdb_env_stat(env->env, &mst) == 0)
		env->psize = mst.ms_psize;
	if (env->psize != 0 &&
	    (uint64_t)st.st_size < (uint64_t)(info.me_last_pgno + 1) * mst.ms_psize) {
		ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s is truncated: %llu bytes, its last page ends at %llu; "
			"restore the store from a backup", store->mdb_path,
			(unsigned long long)st.st_size,
			(unsigned long long)(info.me_last_pgno + 1) * mst.ms_psize);
		goto fail;
	}
	/* slots of readers that died without ending their transaction */
	(void)mdb_reader_check(env->env, &dead);
	if ((ret = lmbox_env_attach_dbs(store, env, create)) < 0)
		goto fail;
	*env_r = env;
	return 0;
fail:
	mdb_env_close(env->env);
	free(env);
	return ret;
}

static struct lmbox_env *lmbox_registry_find(dev_t dev, ino_t ino)
{
	pid_t pid = getpid();

	for (struct lmbox_env *env = lmbox_registry; env != NULL; env = env->next) {
		/* environments inherited over fork belong to the parent:
		 * never used, never closed here */
		if (env->dev == dev && env->ino == ino && env->pid == pid)
			return env;
	}
	return NULL;
}

/* Unlink from the registry and close (registry lock held). */
static void lmbox_env_destroy(struct lmbox_env *env)
{
	struct lmbox_env **p;

	for (p = &lmbox_registry; *p != NULL; p = &(*p)->next) {
		if (*p == env) {
			*p = env->next;
			break;
		}
	}
	mdb_env_close(env->env);
	free(env->reclaim_done);
	free(env);
}

/* An idle environment (refcount 0, kept by lmbox_env_unref) is reused only
 * as it would have been opened now, and after the checks of an open: the
 * format version, the databases (registry lock held). */
static int lmbox_env_reuse_idle(struct lmbox_store *store, struct lmbox_env *env,
				 const struct stat *st)
{
	bool create = (store->opts.flags & LMBOX_OPEN_CREATE) != 0;
	MDB_envinfo info;

	if (env->rdonly != ((store->opts.flags & LMBOX_OPEN_RDONLY) != 0) ||
	    env->nosync != (store->opts.fsync == LMBOX_FSYNC_NEVER))
		return 1;
	/* A file cut shorter since: a fresh open refuses it properly.  The
	 * meta pages are read through the map: check they are there first. */
	if (env->psize == 0 || (uint64_t)st->st_size < 2ULL * env->psize ||
	    mdb_env_info(env->env, &info) != 0 ||
	    (uint64_t)st->st_size < (uint64_t)(info.me_last_pgno + 1) * env->psize)
		return 1;
	return lmbox_env_attach_dbs(store, env, create);
}

static int lmbox_store_open_env(struct lmbox_store *store)
{
	bool create = (store->opts.flags & LMBOX_OPEN_CREATE) != 0;
	bool rdonly = (store->opts.flags & LMBOX_OPEN_RDONLY) != 0;
	struct lmbox_env *env = NULL;
	struct stat st;
	int ret = 0;

	pthread_mutex_lock(&lmbox_registry_lock);
	if (stat(store->mdb_path, &st) == 0) {
		/* an inode held open by an environment cannot be another
		 * file's: a store removed and created again is a new one */
		env = lmbox_registry_find(st.st_dev, st.st_ino);
	} else if (errno != ENOENT || !create || rdonly) {
		ret = errno == ENOENT ?
			lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: no store here",
					store->mdb_path) :
			lmbox_set_errno(store, errno, "stat(%s) failed", store->mdb_path);
	}
	if (ret == 0 && env != NULL && env->refcount == 0) {
		ret = lmbox_env_reuse_idle(store, env, &st);
		if (ret != 0) {
			lmbox_env_destroy(env);
			env = NULL;
			if (ret > 0)
				ret = 0; /* opened otherwise now: a fresh one */
		}
	} else if (ret == 0 && env != NULL) {
		if (env->rdonly && !rdonly) {
			ret = lmbox_set_error(store, LMBOX_ERR_INVALID,
				"%s: already opened read-only in this process",
				store->mdb_path);
		} else {
			env->refcount++;
		}
	}
	if (ret == 0 && env == NULL) {
		ret = lmbox_env_create(store, create, &env);
		if (ret == 0) {
			env->next = lmbox_registry;
			lmbox_registry = env;
		}
	}
	if (ret == 0)
		store->env = env;
	pthread_mutex_unlock(&lmbox_registry_lock);
	return ret;
}

/* The last reference gone: keep the environment idle for the next open of
 * the same store if it is small, closing the one kept before (one per
 * process); close it otherwise.  Saves an LMTP delivery LMDB's open and
 * close (a 2 MB calloc, the lock file, mapping and faulting in the map). */
static void lmbox_env_unref(struct lmbox_env *env)
{
	pthread_mutex_lock(&lmbox_registry_lock);
	if (--env->refcount == 0) {
		struct lmbox_env *e, *next;

		if (env->map_size > LMBOX_ENV_LINGER_MAP_MAX ||
		    getenv("LMBOX_NO_ENV_LINGER") != NULL) {
			lmbox_env_destroy(env);
		} else {
			for (e = lmbox_registry; e != NULL; e = next) {
				next = e->next;
				if (e != env && e->refcount == 0 && e->pid == env->pid)
					lmbox_env_destroy(e);
			}
		}
	}
	pthread_mutex_unlock(&lmbox_registry_lock);
}

/* Idle environments are closed at exit (or when the library is unloaded). */
static void __attribute__((destructor)) lmbox_env_close_idle(void)
{
	struct lmbox_env *e, *next;
	pid_t pid = getpid();

	pthread_mutex_lock(&lmbox_registry_lock);
	for (e = lmbox_registry; e != NULL; e = next) {
		next = e->next;
		if (e->refcount == 0 && e->pid == pid)
			lmbox_env_destroy(e);
	}
	pthread_mutex_unlock(&lmbox_registry_lock);
}


static int lmbox_store_open_real(struct lmbox_store *store, const char *dir)
{
	struct lmbox_store_opts *opts = &store->opts;
	bool create = (opts->flags & LMBOX_OPEN_CREATE) != 0;
	mode_t dir_mode = lmbox_dir_mode(opts->file_mode);
	struct statfs sfs;
	int ret;

	if (create && !(opts->flags & LMBOX_OPEN_RDONLY)) {
		if ((ret = lmbox_mkdir_parents(store, dir, dir_mode)) < 0)
			return ret;
	}
	if (statfs(dir, &sfs) < 0) {
		if (errno == ENOENT)
			return lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: no store here", dir);
		return lmbox_set_errno(store, errno, "statfs(%s) failed", dir);
	}
	if (sfs.f_type == NFS_SUPER_MAGIC) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s is on NFS: LMDB locking does not work there; use a local file system",
			dir);
	}
	if (!(opts->flags & LMBOX_OPEN_RDONLY)) {
		if ((mkdir(store->seg_dir, dir_mode) < 0 && errno != EEXIST) ||
		    (mkdir(store->tmp_dir, dir_mode) < 0 && errno != EEXIST)) {
			if (create || errno != ENOENT)
				return lmbox_set_errno(store, errno, "mkdir(%s/...) failed", dir);
		}
	}
	if ((ret = lmbox_store_open_env(store)) < 0)
		return ret;
	if (!(opts->flags & LMBOX_OPEN_RDONLY)) {
		/* redo hole punching / unlinks a crash interrupted; failures
		 * leave them pending for the next open and are not fatal */
		(void)lmbox_reclaim_pending(store);
		lmbox_reserve_mdb_space(store);
	}
	return 0;
}

int lmbox_store_open(const char *dir, const struct lmbox_store_opts *opts,
		     struct lmbox_store **store_r, const char **errmsg_r)
{
	struct lmbox_store *store;
	int ret;

	*store_r = NULL;
	if (errmsg_r != NULL)
		*errmsg_r = NULL;
	store = calloc(1, sizeof(*store));
	if (store == NULL) {
		snprintf(lmbox_open_errmsg, sizeof(lmbox_open_errmsg), "%s: out of memory", dir);
		if (errmsg_r != NULL)
			*errmsg_r = lmbox_open_errmsg;
		return LMBOX_ERR_NOMEM;
	}
	pthread_once(&lmbox_atfork_once, lmbox_atfork_init);
	store->pid = getpid();
	store->fork_gen = __atomic_load_n(&lmbox_fork_gen, __ATOMIC_RELAXED);
	lmbox_store_opts_init(&store->opts);
	if (opts != NULL) {
		store->opts = *opts;
		if (store->opts.map_initial == 0)
			store->opts.map_initial = LMBOX_DEFAULT_MAP_INITIAL;
		if (store->opts.map_max == 0)
			store->opts.map_max = LMBOX_DEFAULT_MAP_MAX;
		if (store->opts.segment_max == 0)
			store->opts.segment_max = LMBOX_DEFAULT_SEGMENT_MAX;
		if (store->opts.max_readers == 0)
			store->opts.max_readers = LMBOX_DEFAULT_MAX_READERS;
		if (store->opts.file_mode == 0)
			store->opts.file_mode = 0600;
	}
	store->opts.tmp_dir = NULL;
	if (store->opts.map_initial > store->opts.map_max)
		store->opts.map_initial = store->opts.map_max;
	if (dir == NULL || dir[0] == '\0') {
		ret = lmbox_set_error(store, LMBOX_ERR_INVALID, "store directory not given");
	} else if (store->opts.compress_level < 0 || store->opts.compress_level > 9) {
		ret = lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: compress_level %d is not 0-9", dir, store->opts.compress_level);
	} else if ((unsigned int)store->opts.fsync > LMBOX_FSYNC_NEVER) {
		ret = lmbox_set_error(store, LMBOX_ERR_INVALID, "%s: bad fsync mode", dir);
	} else if ((store->dir = strdup(dir)) == NULL ||
		   (store->seg_dir = lmbox_path_join(dir, "seg")) == NULL ||
		   (store->tmp_dir = opts != NULL && opts->tmp_dir != NULL ?
		    strdup(opts->tmp_dir) : lmbox_path_join(dir, "tmp")) == NULL ||
		   (store->mdb_path = lmbox_path_join(dir, "lmbox.mdb")) == NULL) {
		ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "%s: out of memory", dir);
	} else {
		store->opts.tmp_dir = store->tmp_dir;
		ret = lmbox_store_open_real(store, dir);
	}
	if (ret < 0) {
		memcpy(lmbox_open_errmsg, store->errmsg, sizeof(lmbox_open_errmsg));
		if (errmsg_r != NULL)
			*errmsg_r = lmbox_open_errmsg;
		store->pid = 0; /* nothing to unref */
		if (store->env != NULL)
			lmbox_env_unref(store->env);
		free(store->dir);
		free(store->seg_dir);
		free(store->tmp_dir);
		free(store->mdb_path);
		free(store);
		return ret;
	}
	*store_r = store;
	return 0;
}

void lmbox_store_close(struct lmbox_store **_store)
{
	struct lmbox_store *store = *_store;

	if (store == NULL)
		return;
	*_store = NULL;
	/* after fork the environment is the parent's: leave it alone */
	if (lmbox_same_process(store)) {
		if (store->sync_pending)
			(void)lmbox_store_sync(store);
		if ((store->opts.flags & LMBOX_OPEN_DEFER_RECLAIM) != 0)
			(void)lmbox_store_reclaim(store);
		lmbox_env_unref(store->env);
	}
	lmbox_sdict_free_all(store);
	free(store->dir);
	free(store->seg_dir);
	free(store->tmp_dir);
	free(store->mdb_path);
	free(store);
}

const char *lmbox_store_errmsg(const struct lmbox_store *store)
{
	return store->errmsg[0] != '\0' ? store->errmsg : "no error";
}

const char *lmbox_store_path(const struct lmbox_store *store)
{
	return store->dir;
}

int lmbox_store_sync(struct lmbox_store *store)
{
	int ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	if (!store->sync_pending)
		return 0;
	if ((ret = lmbox_env_sync(store)) == 0)
		store->sync_pending = false;
	return ret;
}

/* ------------------------------------------------------------ u64 values */

static int lmbox_value_name_check(struct lmbox_store *store, const char *name)
{
	size_t len = name == NULL ? 0 : strlen(name);

	if (len == 0 || len > LMBOX_MAX_VALUE_NAME) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: value name must be 1-%d bytes", store->dir, LMBOX_MAX_VALUE_NAME);
	}
	return 0;
}

int lmbox_store_get_u64(struct lmbox_store *store, const char *name, uint64_t *value_r)
{
	MDB_txn *txn;
	MDB_val k, v;
	int rc, ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0 ||
	    (ret = lmbox_value_name_check(store, name)) < 0 ||
	    (ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	k.mv_data = (void *)name;
	k.mv_size = strlen(name);
	rc = mdb_get(txn, store->env->dbi_values, &k, &v);
	if (rc == MDB_NOTFOUND) {
		ret = lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: value %s is not set",
				      store->dir, name);
	} else if (rc != 0) {
		ret = lmbox_set_mdb_error(store, rc, "%s: reading value %s", store->dir, name);
	} else if (lmbox_u64_decode(v.mv_data, v.mv_size, value_r) < 0) {
		ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: value %s has bad length %zu",
				      store->mdb_path, name, v.mv_size);
	}
	mdb_txn_abort(txn);
	return ret;
}

struct lmbox_set_u64_ctx {
	const char *name;
	uint64_t value;
};

static int lmbox_set_u64_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_set_u64_ctx *c = context;
	unsigned char buf[8];
	MDB_val k = { strlen(c->name), (void *)c->name }, v = { 8, buf };
	int rc;

	lmbox_put_le64(buf, c->value);
	rc = mdb_put(ctx->txn, ctx->store->env->dbi_values, &k, &v, 0);
	if (rc != 0) {
		return lmbox_set_mdb_error(ctx->store, rc, "%s: writing value %s",
					   ctx->store->dir, c->name);
	}
	return 0;
}

int lmbox_store_set_u64(struct lmbox_store *store, const char *name, uint64_t value)
{
	struct lmbox_set_u64_ctx c = { name, value };
	int ret;

	if ((ret = lmbox_value_name_check(store, name)) < 0)
		return ret;
	return lmbox_write(store, lmbox_set_u64_fn, &c);
}
