/*
 * lmbox-check.c: consistency check and repair, compaction, store stat.
 */
#include "lmbox-private.h"

int lmbox_check(struct lmbox_store *store, unsigned int flags,
		lmbox_report_fn *report, void *context)
{
	(void)flags; (void)report; (void)context;
	return lmbox_set_error(store, LMBOX_ERR_INVALID, "not implemented yet");
}

int lmbox_compact(struct lmbox_store *store, uint64_t *bytes_freed_r)
{
	*bytes_freed_r = 0;
	return lmbox_set_error(store, LMBOX_ERR_INVALID, "not implemented yet");
}

int lmbox_store_stat(struct lmbox_store *store, struct lmbox_store_stat *stat_r)
{
	(void)stat_r;
	return lmbox_set_error(store, LMBOX_ERR_INVALID, "not implemented yet");
}
