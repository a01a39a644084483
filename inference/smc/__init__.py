"""Sequential Monte Carlo (to come).

Planned: particle collections, resampling schemes (multinomial, systematic, stratified,
residual), extend / reweight / resample / rejuvenate blocks, drivers for sequence models and
tempering, and particle MCMC. Every block keeps the evidence estimate unbiased.
"""
