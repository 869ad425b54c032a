// SPDX-License-Identifier: GPL-2.0
/*
 * The lab's long scatter-list workload: maps a list of `nents` separate 4 KiB
 * pages on a real PCI device behind the (emulated) IOMMU with dma_map_sg() and
 * unmaps it with dma_unmap_sg(), `count` times per length, at load time.
 *
 *   insmod iommu_lab_sg.ko dev=0000:00:0a.0 nents=1024,2049,4096 count=8
 *
 * sg_alloc_table() chains the list every 128 entries (SG_MAX_SINGLE_ALLOC),
 * so lists this long are chained lists. The device never touches the pages:
 * mapping them is all the DMA API and the IOMMU see. What each map returned
 * (mapped DMA segments) is read back from /sys/module/iommu_lab_sg/parameters/mapped.
 */
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/scatterlist.h>

#define MAX_LENGTHS 8

static char *dev;
module_param(dev, charp, 0444);
MODULE_PARM_DESC(dev, "PCI device to map on (dddd:bb:dd.f)");

static int nents[MAX_LENGTHS] = { 1024 };
static int n_nents = 1;
module_param_array(nents, int, &n_nents, 0444);
MODULE_PARM_DESC(nents, "list lengths, each mapped `count` times");

static int count = 1;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "maps and unmaps per length");

/* per length: segments dma_map_sg() returned (the same every time, or init fails) */
static int mapped[MAX_LENGTHS];
static int n_mapped;
module_param_array(mapped, int, &n_mapped, 0444);

static void free_list(struct sg_table *sgt)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgt->sgl, sg, sgt->orig_nents, i)
		if (sg_page(sg))
			__free_page(sg_page(sg));
	sg_free_table(sgt);
}

static int map_list(struct device *d, int n, int *segs)
{
	struct sg_table sgt;
	struct scatterlist *sg;
	int i, ret;

	ret = sg_alloc_table(&sgt, n, GFP_KERNEL);
	if (ret)
		return ret;
	for_each_sg(sgt.sgl, sg, n, i) {
		struct page *p = alloc_page(GFP_KERNEL);

		if (!p) {
			free_list(&sgt);
			return -ENOMEM;
		}
		sg_set_page(sg, p, PAGE_SIZE, 0);
	}
	for (i = 0; i < count; i++) {
		int got = dma_map_sg(d, sgt.sgl, sgt.orig_nents, DMA_TO_DEVICE);

		if (got <= 0 || (i && got != *segs)) {
			pr_err("iommu_lab_sg: dma_map_sg of %d entries returned %d\n", n, got);
			ret = -EIO;
			if (got > 0)
				dma_unmap_sg(d, sgt.sgl, sgt.orig_nents, DMA_TO_DEVICE);
			break;
		}
		*segs = got;
		dma_unmap_sg(d, sgt.sgl, sgt.orig_nents, DMA_TO_DEVICE);
	}
	free_list(&sgt);
	return ret;
}

static int __init lab_sg_init(void)
{
	struct device *d;
	int i, ret = 0;

	if (PAGE_SIZE != 4096 || !dev || count < 1)
		return -EINVAL;
	d = bus_find_device_by_name(&pci_bus_type, NULL, dev);
	if (!d) {
		pr_err("iommu_lab_sg: no PCI device %s\n", dev);
		return -ENODEV;
	}
	for (i = 0; i < n_nents && !ret; i++) {
		if (nents[i] < 1) {
			ret = -EINVAL;
			break;
		}
		ret = map_list(d, nents[i], &mapped[i]);
		if (!ret) {
			n_mapped = i + 1;
			pr_info("iommu_lab_sg: %s: %d x %d entries (%lu bytes) mapped as %d segments\n",
				dev, count, nents[i], nents[i] * PAGE_SIZE, mapped[i]);
		}
	}
	put_device(d);
	return ret;
}

static void __exit lab_sg_exit(void)
{
}

module_init(lab_sg_init);
module_exit(lab_sg_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("iommu-trace lab: long scatter lists through dma_map_sg/dma_unmap_sg");
