/*
 * lmbox-error.c: the closed set of error codes, their texts, and the helpers
 * that turn errno / LMDB return codes into (code, one-line errmsg) on a
 * store.  Every failure path of the library goes through here so that
 * errmsg always names what failed and why.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

const char *lmbox_strerror(int err)
{
	switch (err) {
	case LMBOX_OK: return "success";
	case LMBOX_ERR_IO: return "I/O error";
	case LMBOX_ERR_NOTFOUND: return "not found";
	case LMBOX_ERR_EXISTS: return "already exists";
	case LMBOX_ERR_CORRUPT: return "store is corrupt";
	case LMBOX_ERR_CHECKSUM: return "body checksum mismatch";
	case LMBOX_ERR_VERSION: return "store format is newer than this library";
	case LMBOX_ERR_NOSPACE: return "out of disk space or quota";
	case LMBOX_ERR_MAPFULL: return "metadata map is full";
	case LMBOX_ERR_NOMEM: return "out of memory";
	case LMBOX_ERR_INVALID: return "invalid argument";
	case LMBOX_ERR_PERM: return "permission denied";
	case LMBOX_ERR_TOOBIG: return "message too big";
	case LMBOX_ERR_BUSY: return "store busy";
	case LMBOX_ERR_FORK: return "store handle used after fork";
	case LMBOX_ERR_READONLY: return "store is read-only";
	}
	return "unknown error";
}

int lmbox_error_is_temporary(int err)
{
	return err == LMBOX_ERR_NOSPACE || err == LMBOX_ERR_BUSY ||
		err == LMBOX_ERR_IO || err == LMBOX_ERR_MAPFULL;
}

int lmbox_errno_code(int errnum)
{
	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:   /* a file size limit: space, not the message */
		return LMBOX_ERR_NOSPACE;
	case EACCES:
	case EPERM:
		return LMBOX_ERR_PERM;
	case ENOMEM:
		return LMBOX_ERR_NOMEM;
	case ENOENT:
		return LMBOX_ERR_NOTFOUND;
	case EROFS:
		return LMBOX_ERR_READONLY;
	case EAGAIN:
	case EBUSY:
		return LMBOX_ERR_BUSY;
	default:
		return LMBOX_ERR_IO;
	}
}

int lmbox_mdb_code(int rc)
{
	switch (rc) {
	case MDB_SUCCESS: return LMBOX_OK;
	case MDB_NOTFOUND: return LMBOX_ERR_NOTFOUND;
	case MDB_KEYEXIST: return LMBOX_ERR_EXISTS;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return LMBOX_ERR_MAPFULL;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
		return LMBOX_ERR_BUSY;
	case MDB_VERSION_MISMATCH:
		return LMBOX_ERR_VERSION;
	case MDB_PAGE_NOTFOUND:
	case MDB_CORRUPTED:
	case MDB_INVALID:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
		return LMBOX_ERR_CORRUPT;
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_DBI:
	case MDB_DBS_FULL:
	case MDB_PANIC:
		return LMBOX_ERR_IO;
	}
	return rc > 0 ? lmbox_errno_code(rc) : LMBOX_ERR_IO;
}

static void lmbox_vformat(struct lmbox_store *store, const char *fmt, va_list args,
			  const char *cause)
{
	size_t len;

	vsnprintf(store->errmsg, sizeof(store->errmsg), fmt, args);
	len = strlen(store->errmsg);
	if (cause != NULL && len < sizeof(store->errmsg))
		snprintf(store->errmsg + len, sizeof(store->errmsg) - len, ": %s", cause);
}

int lmbox_set_error(struct lmbox_store *store, int code, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	lmbox_vformat(store, fmt, args, NULL);
	va_end(args);
	return code;
}

void lmbox_set_warning(struct lmbox_store *store, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vsnprintf(store->warning, sizeof(store->warning), fmt, args);
	va_end(args);
	store->has_warning = true;
}

const char *lmbox_store_take_warning(struct lmbox_store *store)
{
	if (!store->has_warning)
		return NULL;
	store->has_warning = false;
	return store->warning;
}

int lmbox_set_errno(struct lmbox_store *store, int errnum, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	lmbox_vformat(store, fmt, args, strerror(errnum));
	va_end(args);
	return lmbox_errno_code(errnum);
}

int lmbox_set_mdb_error(struct lmbox_store *store, int rc, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	lmbox_vformat(store, fmt, args, mdb_strerror(rc));
	va_end(args);
	return lmbox_mdb_code(rc);
}

/* arrp is the address of a T* (void * so any T** converts without a
 * type-punned cast). */
int lmbox_grow_array(void *arrp, unsigned int *alloc, unsigned int need, size_t elem)
{
	unsigned int new_alloc;
	void *arr, *p;

	if (need <= *alloc)
		return 0;
	new_alloc = *alloc < 8 ? 8 : *alloc * 2;
	while (new_alloc < need)
		new_alloc *= 2;
	memcpy(&arr, arrp, sizeof(arr));
	p = realloc(arr, (size_t)new_alloc * elem);
	if (p == NULL)
		return LMBOX_ERR_NOMEM;
	memcpy(arrp, &p, sizeof(p));
	*alloc = new_alloc;
	return 0;
}
