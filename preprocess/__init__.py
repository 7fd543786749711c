"""Stage 1: videos and split files to frame shards (WebDataset tars + Zarr index), on Dask."""
