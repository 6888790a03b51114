"""Rate updates at the top of the rate's range (`uint192`): the 10 % bound holds for rates above 2^128."""

HOUR = 3_600


def test_setRates__rate_above_2_pow_128__moves_by_ten_percent_an_hour_later(rates, admin, chain):
    rate = 2**130
    rates.setRates(["chf"], [rate], sender=admin)
    chain.pending_timestamp += HOUR
    rates.setRates(["chf"], [rate * 11 // 10], sender=admin)
    assert rates.rateOf("chf") == rate * 11 // 10
