/*
 * test-linger: the environment of the last store closed in a process stays
 * open for the next open of the same store (lmbox_env_unref), and is never
 * reused when that would be wrong:
 * 1. closed and opened again: the same store, its messages;
 * 2. the store removed and created again at the same path: the new one;
 * 3. opened read-only after read-write (and back): works both ways;
 * 4. lmbox.mdb cut short while idle: the open refuses it (CORRUPT), it
 *    does not fault;
 * 5. another store closed after it: the first one's files are closed (one
 *    idle environment per process).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>

#include "test-common.h"

static struct lmbox_store *open_store(const char *name, unsigned int flags, int *ret_r)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store = NULL;
	const char *err;

	lmbox_store_opts_init(&opts);
	opts.flags = flags;
	opts.fsync = LMBOX_FSYNC_NEVER;
	*ret_r = lmbox_store_open(test_path(name), &opts, &store, &err);
	return store;
}

static uint32_t count_msgs(struct lmbox_store *store)
{
	struct lmbox_folder_info info;

	if (lmbox_folder_lookup(store, "INBOX", &info) < 0)
		return UINT32_MAX;
	return info.count;
}

static void add_msg(struct lmbox_store *store)
{
	struct lmbox_folder_info info;
	uint32_t id;

	if (lmbox_folder_lookup(store, "INBOX", &info) == 0)
		id = info.id;
	else
		CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &id));
	CHECK(test_append(store, id, "Subject: x\n\nbody\n", 17, NULL) != 0);
}

/* fds of this process open on files under the store dir */
static int open_fds_under(const char *name)
{
	char link[300], target[PATH_MAX];
	const char *dir = test_path(name);
	struct dirent *d;
	DIR *fds = opendir("/proc/self/fd");
	int n = 0;
	ssize_t len;

	if (fds == NULL)
		return -1;
	while ((d = readdir(fds)) != NULL) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", d->d_name);
		if ((len = readlink(link, target, sizeof(target) - 1)) <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, dir, strlen(dir)) == 0 && target[strlen(dir)] == '/')
			n++;
	}
	closedir(fds);
	return n;
}

static int rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st; (void)type; (void)ftw;
	return remove(path);
}

int main(void)
{
	struct lmbox_store *store;
	char path[600];
	int ret, fd;

	test_init();

	/* 1 */
	store = open_store("a", LMBOX_OPEN_CREATE, &ret);
	CHECK(ret == 0);
	add_msg(store);
	lmbox_store_close(&store);
	CHECK(open_fds_under("a") > 0);            /* kept idle */
	store = open_store("a", 0, &ret);
	CHECK(ret == 0 && count_msgs(store) == 1);
	add_msg(store);
	lmbox_store_close(&store);

	/* 2 */
	CHECK(nftw(test_path("a"), rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0);
	store = open_store("a", LMBOX_OPEN_CREATE, &ret);
	CHECK(ret == 0 && count_msgs(store) == UINT32_MAX);
	add_msg(store);
	CHECK(count_msgs(store) == 1);
	lmbox_store_close(&store);

	/* 3 */
	store = open_store("a", LMBOX_OPEN_RDONLY, &ret);
	CHECK(ret == 0 && count_msgs(store) == 1);
	lmbox_store_close(&store);
	store = open_store("a", 0, &ret);
	CHECK(ret == 0 && count_msgs(store) == 1);
	add_msg(store);
	CHECK(count_msgs(store) == 2);
	lmbox_store_close(&store);

	/* 4 */
	snprintf(path, sizeof(path), "%s/lmbox.mdb", test_path("a"));
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
	if (fd >= 0)
		close(fd);
	store = open_store("a", 0, &ret);
	CHECK(ret == LMBOX_ERR_CORRUPT && store == NULL);

	/* 5 */
	store = open_store("b", LMBOX_OPEN_CREATE, &ret);
	CHECK(ret == 0);
	add_msg(store);
	lmbox_store_close(&store);
	store = open_store("c", LMBOX_OPEN_CREATE, &ret);
	CHECK(ret == 0);
	add_msg(store);
	lmbox_store_close(&store);
	CHECK(open_fds_under("b") == 0);
	CHECK(open_fds_under("c") > 0);
	return test_exit();
}
